"""The ``hsiuu`` command's entry point: a Ctrl-C while the command's modules load still ends quietly."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .app import main as run_app  # loading torch, rasterio and the commands is most of a short run
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    run_app()
