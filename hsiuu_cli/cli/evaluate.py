"""`hsiuu evaluate` (placeholder until its issue lands)."""

import typer


def evaluate_command() -> None:
    """Not available yet."""
    raise typer.Exit(1)
