"""The connector's client for the private origin: HTTP/1.1, HTTP/2, HTTP/3 and WebSocket.

:mod:`.client` picks the path per service and ``origin-protocol``. The paths: :mod:`.h1`
(HTTP/1.1, plain or over TLS), :mod:`.https` with :mod:`.h2` and :mod:`.h2_request` (TLS over
TCP, HTTP/2 when the origin offers it), :mod:`.h3` (QUIC) and :mod:`.websocket`. :mod:`.tls`
opens every TLS connection on TCP with the post-quantum policy; :mod:`.request` holds what they
all share (request, response, hop, error).
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
