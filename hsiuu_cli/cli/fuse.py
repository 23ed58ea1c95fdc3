"""`hsiuu fuse` (placeholder until its issue lands)."""

import typer


def fuse_command() -> None:
    """Not available yet."""
    raise typer.Exit(1)
