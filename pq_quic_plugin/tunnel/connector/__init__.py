"""The connector: keeps HA connections to the edges and proxies their requests to the origin.

:mod:`.supervisor` (the :class:`Connector`: connection loop, backoff, drain, signals),
:mod:`.dialer` (one QUIC connection on a connected UDP socket, so ICMP errors are heard),
:mod:`.registration` (handshake settings and the registration exchange), :mod:`.failures` (why
an attempt failed and whether to retry), :mod:`.proxy` (one tunnelled request or WebSocket),
:mod:`.report` (the post-quantum failure banner and report).
"""

from .supervisor import Connector

__all__ = ["Connector"]
