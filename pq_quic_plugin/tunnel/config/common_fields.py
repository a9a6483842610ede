"""Rows both programs' field tables use: the connector's (``fields.py``) and the edge's
(``edge_fields.py``) metrics, log and shutdown keys mean the same, so they are declared once
here and only their help differs.
"""

from __future__ import annotations

from typing import Any

from ..hostnames import HostPort
from ..logs import LOG_FORMATS
from .kinds import (
    ChoiceValue,
    DurationValue,
    HostPortValue,
    LogLevelValue,
    PathValue,
)
from .table import ConfigField, ConfigFlag, ValueKind

__all__ = ["field_row", "grace_period_field", "log_fields", "loglevel_field", "metrics_field"]


def field_row(
    key: str, kind: ValueKind, doc: str, *, flag_help: str | None = None, **options: Any
) -> ConfigField:
    """A key whose attribute is the key in snake case and whose flag, if it has one, is
    ``--KEY`` with ``flag_help``, so a row says neither twice. That is every key but
    ``tunnel`` (a positional argument); ``--url`` has no key. ``options`` are
    :class:`ConfigField`'s."""
    flag = None if flag_help is None else ConfigFlag(f"--{key}", flag_help)
    return ConfigField(key, key.replace("-", "_"), kind, doc, flag=flag, **options)


def metrics_field(doc: str, flag_help: str | None = None, env: str | None = None) -> ConfigField:
    """Both programs serve their metrics on a free local port unless told where."""
    return field_row(
        "metrics",
        HostPortValue(listen=True),
        doc,
        default=HostPort("127.0.0.1", 0),
        flag_help=flag_help,
        env=env,
    )


def loglevel_field(program: str, flag_help: str, env: str | None = None) -> ConfigField:
    """Both programs log at the same levels, ``info`` unless told otherwise."""
    return field_row(
        "loglevel",
        LogLevelValue(),
        f"how much the {program} logs",
        default="info",
        flag_help=flag_help,
        env=env,
    )


def log_fields(program: str, env: bool) -> tuple[ConfigField, ConfigField]:
    """Both programs can log to a file as well, and in JSON (``logs.py``)."""
    return (
        field_row(
            "logfile",
            PathValue(must_exist=False),
            f"also append the {program}'s log to this file (created 0600 if new); relative "
            "to this file",
            default_doc="none (standard error only)",
            flag_help="also append the log to this file",
            env="TUNNEL_LOGFILE" if env else None,
        ),
        field_row(
            "log-format",
            ChoiceValue(LOG_FORMATS),
            "`text`: cloudflared-like lines (`2026-01-02T10:00:00Z INF message`); `json`: one "
            'JSON object per line (`{"time", "level", "logger", "message"}`), on standard '
            "error and in `logfile` alike",
            default="text",
            flag_help="text, or json (one JSON object per line)",
            env="TUNNEL_LOG_FORMAT" if env else None,
        ),
    )


def grace_period_field(flag_help: str | None = None, env: str | None = None) -> ConfigField:
    """Both programs give requests in flight the same time to finish at shutdown."""
    return field_row(
        "grace-period",
        DurationValue(),
        "on SIGTERM/SIGINT, how long requests in flight may take to finish",
        default=30.0,
        flag_help=flag_help,
        env=env,
    )
