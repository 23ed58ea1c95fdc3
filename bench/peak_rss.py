"""Wall time and peak resident memory of one command, for the benchmarks' memory figures."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path


def run_measured(command: list[str], **run_options) -> tuple[float, int, subprocess.CompletedProcess]:
    """Run ``command`` (text output captured) under GNU time: wall seconds, peak RSS in MiB, the result.

    GNU time's %M is this command's own peak; getrusage(RUSAGE_CHILDREN) would keep the largest of
    all the children so far, and a child forked from a large process inherits its high-water mark.
    Raises RuntimeError with the command's stderr when it fails.
    """
    with tempfile.NamedTemporaryFile(suffix=".rss") as rss:
        started = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *command],
                              capture_output=True, text=True, **run_options)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        peak_kib = int(Path(rss.name).read_text().split()[-1])
    return seconds, peak_kib // 1024, done
