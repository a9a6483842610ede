"""How ``pq-tunnel`` logs: cloudflared-like text lines or one JSON object per line, to standard
error and, with ``logfile``, to a file as well.

Operators feed these logs to collectors, so the JSON form carries exactly what the text form
does (time, level, logger, message) and nothing else: no record attributes that could pick up a
value a caller passed for formatting. Nothing logged anywhere in the tunnel contains a secret
(the tunnel secret stays in the credentials file); this module adds none.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

__all__ = ["LOG_FORMATS", "JsonFormatter", "TextFormatter", "setup_logging"]

#: The values of ``log-format`` (``--log-format``, ``TUNNEL_LOG_FORMAT``); the first is the
#: default.
LOG_FORMATS = ("text", "json")

#: Loggers too chatty for an operator at ``info``.
_NOISY = ("quic", "hypercorn.access")


def _stamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))


class TextFormatter(logging.Formatter):
    """cloudflared-like lines: ``2026-11-28T10:00:00Z INF message``."""

    LEVELS = {"DEBUG": "DBG", "INFO": "INF", "WARNING": "WRN", "ERROR": "ERR", "CRITICAL": "ERR"}

    def format(self, record: logging.LogRecord) -> str:
        level = self.LEVELS.get(record.levelname, record.levelname)
        text = f"{_stamp(record.created)} {level} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``{"time", "level", "logger", "message"}`` (plus ``error``
    with the traceback, when there is one). Newlines inside a message stay escaped, so a line
    is always one record."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _open_logfile(path: Path) -> logging.Handler:
    """Append to ``path``, creating it 0600: the log names hostnames and addresses."""
    path = path.expanduser()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    stream = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
    return logging.StreamHandler(stream)


def setup_logging(level: str, logfile: Path | None = None, log_format: str = "text") -> None:
    """Send every log record at ``level`` or above to standard error (and ``logfile``).

    Raises ``OSError`` when ``logfile`` cannot be opened, before anything is changed, so the
    caller can report it as a configuration error.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile is not None:
        handlers.append(_open_logfile(logfile))
    formatter: logging.Formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    for handler in handlers:
        handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = handlers
    root.setLevel(level.upper())
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
