"""`hsiuu superres` (placeholder until its issue lands)."""

import typer


def superres_command() -> None:
    """Not available yet."""
    raise typer.Exit(1)
