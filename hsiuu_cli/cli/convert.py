"""`hsiuu convert` (placeholder until its issue lands)."""

import typer


def convert_command() -> None:
    """Not available yet."""
    raise typer.Exit(1)
