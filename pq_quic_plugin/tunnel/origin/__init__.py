"""The connector's client for the private origin: HTTP/1.1, HTTP/3 and WebSocket.

:mod:`.client` picks the path per service; :mod:`.h1`, :mod:`.h3` and :mod:`.websocket` are
the three paths; :mod:`.request` holds what they share (request, response, hop, error).
"""

from .client import OriginClient, origin_service
from .request import (
    HOP_NAME,
    HeadersFor,
    OriginError,
    OriginHop,
    OriginRequest,
    OriginResponse,
    join_path,
)
from .websocket import OriginWebSocket

__all__ = [
    "HOP_NAME",
    "HeadersFor",
    "OriginClient",
    "OriginError",
    "OriginHop",
    "OriginRequest",
    "OriginResponse",
    "OriginWebSocket",
    "join_path",
    "origin_service",
]
