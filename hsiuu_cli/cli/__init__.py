"""The thin Typer layer: one module per subcommand over the library packages."""
