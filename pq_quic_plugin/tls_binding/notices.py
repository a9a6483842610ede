"""One WARNING per kind of classical peer per minute, INFO for the rest.

Under ``prefer`` every classical handshake is worth knowing about, but a public server facing
curl, bots and old clients would write one WARNING per connection: the log fills with one line
repeated, and the lines that matter scroll away. So a context warns once per kind of peer (the
side, the negotiated group and the TLS version) per :data:`WINDOW` seconds; the others of that
kind in the window are logged at INFO (nothing is dropped for whoever runs at INFO), and the next
WARNING of the kind says how many there were. Kept per context: two listeners, or two tests,
never silence each other.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["WINDOW", "ClassicalNotices"]

#: Seconds between two WARNINGs of the same kind.
WINDOW = 60.0


class ClassicalNotices:
    """The rate limit of one context's "NOT post-quantum" lines."""

    def __init__(
        self, logger: logging.Logger, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._clock = clock
        self._lock = threading.Lock()
        #: kind -> (when its window started, how many went to INFO since)
        self._windows: dict[Hashable, tuple[float, int]] = {}

    def log(self, kind: Hashable, message: str, *args: Any) -> None:
        """Log ``message % args`` at WARNING if ``kind`` had none in the last window, else at
        INFO; a WARNING after quieter ones appends their count."""
        now = self._clock()
        with self._lock:
            started, quiet = self._windows.get(kind, (now - WINDOW, 0))
            warn = now - started >= WINDOW
            self._windows[kind] = (now, 0) if warn else (started, quiet + 1)
        if not warn:
            self._logger.info(message, *args)
            return
        if quiet:
            message += " (and %d more like this since the last such warning, logged at INFO)"
            args = (*args, quiet)
        self._logger.warning(message, *args)
