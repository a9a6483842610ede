"""The HTTP/3 client the tunnel, the demo and the tests use (aioquic, post-quantum by policy).

It exists because every hop that this project makes post-quantum needs a client that can say
which group it negotiated; general-purpose HTTP/3 clients do not expose that.

.. code-block:: python

    async with open_session("https://localhost:4433", client_configuration("require")) as s:
        page = await s.request("GET", "/")                  # the whole body
        async with s.stream("GET", "/big") as response:      # the body as it arrives
            async for chunk in response.body: ...

Both styles are one request path (:mod:`.session`); every failure is an :class:`HTTP3Error`
(:mod:`.errors`).
"""

from .errors import (
    ConnectError,
    ConnectionClosedError,
    HandshakeError,
    HTTP3Error,
    ReadTimeout,
    RemoteProtocolError,
    StreamResetError,
    TimeoutException,
    WriteTimeout,
)
from .response import Response, ResponseBody, StreamedResponse
from .session import HTTP3Session, client_configuration, fetch, open_session
from .upload import SEND_BUFFER_HIGH

__all__ = [
    "SEND_BUFFER_HIGH",
    "ConnectError",
    "ConnectionClosedError",
    "HTTP3Error",
    "HTTP3Session",
    "HandshakeError",
    "ReadTimeout",
    "RemoteProtocolError",
    "Response",
    "ResponseBody",
    "StreamResetError",
    "StreamedResponse",
    "TimeoutException",
    "WriteTimeout",
    "client_configuration",
    "fetch",
    "open_session",
]
