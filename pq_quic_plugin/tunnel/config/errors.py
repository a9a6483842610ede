"""The one exception every configuration mistake is reported with."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration mistake, with the file, line and key it concerns already in the message.

    ``source``, ``line`` and ``key`` are also kept as attributes so a CLI or a test can use them
    without parsing the text; any of them may be ``None`` (a flag has no file or line).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.line = line
        self.key = key
