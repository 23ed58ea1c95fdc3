"""`hsiuu info` (placeholder until its issue lands)."""

import typer


def info_command() -> None:
    """Not available yet."""
    raise typer.Exit(1)
