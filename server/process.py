"""What every process of ``scangate serve`` sets up for itself: its logging (one
JSON object per line on stderr) and its garbage collector. A leaf: it imports no
other server module, so the supervisor, the writer and the workers all can.
"""

from __future__ import annotations

import gc
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

__all__ = ["setup_logging", "settle_heap", "SERVER_GC_THRESHOLDS"]

# young-generation collections every 10,000 allocations instead of 700: a request
# allocates a few hundred objects that die with it, nearly none live on
SERVER_GC_THRESHOLDS = (10_000, 20, 20)


def setup_logging(level: str = "INFO") -> None:
    """Structured logs: one JSON object per line on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                                       rename_fields={"asctime": "time", "levelname": "level", "name": "logger",
                                                      "process": "pid"}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def settle_heap() -> None:
    """Once a server process has loaded what it keeps (modules, descriptors, the
    district index), move everything alive out of the garbage collector's sight:
    full collections then walk only what requests create."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVER_GC_THRESHOLDS)
