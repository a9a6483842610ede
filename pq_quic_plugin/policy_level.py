"""The one ``off|prefer|require`` scale that both of the project's policies use.

Key exchange (:class:`~pq_quic_plugin.policy.Policy`) and authentication
(:class:`~pq_quic_plugin.auth_policy.AuthPolicy`) are separate decisions, so they stay separate
enums: a function that takes one refuses the other. What they share is how a user's word
becomes a level (flags, config files, ``True``/``False`` from Python), and that is defined here
once, so ``--pq yes`` and ``--pq-auth yes`` cannot be refused in two different ways.
"""

from __future__ import annotations

import enum
from typing import TypeVar

__all__ = ["PolicyLevel"]

_Level = TypeVar("_Level", bound="PolicyLevel")


class PolicyLevel(str, enum.Enum):
    """Base of an ``off|prefer|require`` enum; a subclass defines the three members and
    :meth:`_subject` (what the policy is about, for the error message)."""

    @classmethod
    def _subject(cls) -> str:
        raise NotImplementedError

    @classmethod
    def parse(cls: type[_Level], value: _Level | str | bool | None) -> _Level:
        """``None`` and ``True`` mean ``prefer``, ``False`` means ``off``; any case, spaces
        around ignored; an unknown word is a ``ValueError`` that lists the three."""
        if isinstance(value, cls):
            return value
        if value is None or value is True:
            return cls("prefer")
        if value is False:
            return cls("off")
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ValueError(
                f"unknown {cls._subject()} policy {value!r}; use one of: off, prefer, require"
            ) from None

    def __str__(self) -> str:
        return str(self.value)
