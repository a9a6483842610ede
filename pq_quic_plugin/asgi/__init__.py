"""ASGI side of the package: the scope facts hypercorn-pq and pq-tunnel put in every request,
and :class:`PostQuantumMiddleware`, which shows and enforces them.
"""

from .middleware import PostQuantumMiddleware, header_value
from .scope import ConnectionFacts, connection_facts
from .types import HOPS_HEADER, Hop

__all__ = [
    "HOPS_HEADER",
    "ConnectionFacts",
    "Hop",
    "PostQuantumMiddleware",
    "connection_facts",
    "header_value",
]
