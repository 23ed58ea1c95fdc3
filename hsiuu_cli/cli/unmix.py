"""`hsiuu unmix` (placeholder until its issue lands)."""

import typer


def unmix_command() -> None:
    """Not available yet."""
    raise typer.Exit(1)
