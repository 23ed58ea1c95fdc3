"""The signals that stop a run (Ctrl-C, SIGTERM, SIGHUP), named once for the CLI, which turns them
into one clean-up, and for the library code that starts processes of its own."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

STOPPING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def signals_held():
    """Stopping signals that arrive in the block take effect when it ends (in the main thread, where
    Python runs signal handlers): a fork and its bookkeeping are not cut apart, so no child is left
    unaccounted for. Fork children inherit the holding handler until they set their own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    before = {number: signal.signal(number, lambda number, _frame: held.append(number)) for number in STOPPING_SIGNALS}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
        if held:
            signal.raise_signal(held[0])
