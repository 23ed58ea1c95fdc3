"""`hsiuu train` (placeholder until its issue lands)."""

import typer

train_app = typer.Typer(help="Train models.", no_args_is_help=True)
