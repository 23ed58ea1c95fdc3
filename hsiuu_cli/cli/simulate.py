"""`hsiuu simulate` (placeholder until its issue lands)."""

import typer


def simulate_command() -> None:
    """Not available yet."""
    raise typer.Exit(1)
