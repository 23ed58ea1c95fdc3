"""GDAL's messages: what it reports through rasterio's logger, collected rather than printed."""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from typing import Iterator


class _GdalWarnings(logging.Handler):
    """Collects the warnings GDAL reports through rasterio's logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(re.sub(r"^CPLE_\w+ in ", "", record.getMessage()))


@contextmanager
def gdal_warnings() -> Iterator[list[str]]:
    handler = _GdalWarnings()
    logger = logging.getLogger("rasterio._env")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
