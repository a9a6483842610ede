"""Key-exchange groups: the :class:`Group` interface, the hybrid construction and the built-ins."""

from .base import Group, InvalidKeyShare
from .builtin import builtin_groups
from .hybrid import HybridGroup

__all__ = ["Group", "HybridGroup", "InvalidKeyShare", "builtin_groups"]
