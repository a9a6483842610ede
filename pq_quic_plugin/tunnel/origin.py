"""The connector's side toward the origin: HTTP/1.1 (``http://``) and HTTP/3 (``https://``).

Bodies stream both ways; nothing holds a whole body. An ``https://`` service is reached over
HTTP/3 with the connector's post-quantum policy, so that hop is post-quantum when the origin
runs ``hypercorn-pq --pq``; ``http://`` is a plaintext hop inside the private network and is
reported as such. WebSockets go over HTTP/1.1 (TLS for ``https://`` services): HTTP/3
WebSockets (RFC 9220) are not supported by hypercorn's aioquic stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from ..http3_client import HTTP3Error, HTTP3Session, client_configuration, open_session

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade"}
BODY_METHODS = {"POST", "PUT", "PATCH"}
READ_CHUNK = 64 * 1024


class OriginError(Exception):
    """The origin could not be reached or answered badly; ``status`` is what the visitor gets."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Hop:
    name: str
    transport: str
    group: str | None
    post_quantum: bool

    def as_dict(self) -> dict[str, Any]:
        return {"hop": self.name, "transport": self.transport, "group": self.group,
                "post_quantum": self.post_quantum}


@dataclass
class OriginResponse:
    status: int
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]
    hop: Hop
    _abort: Callable[[], None] | None = None

    async def aclose(self) -> None:
        if self._abort is not None:
            self._abort()


HeadersFor = Callable[[Hop], list[tuple[str, str]]]


class OriginClient:
    """One per connector; keeps one HTTP/3 connection per https origin."""

    def __init__(self, policy: str = "prefer") -> None:
        self.policy = policy
        self._sessions: dict[tuple[str, int, str | None, str | None], Any] = {}
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        for cm, _ in list(self._sessions.values()):
            with contextlib.suppress(Exception):
                await cm.__aexit__(None, None, None)
        self._sessions.clear()

    # ------------------------------------------------------------------ HTTP

    async def request(
        self,
        service_url: str,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: AsyncIterator[bytes],
        *,
        origin_ca_file: str | None = None,
        origin_server_name: str | None = None,
        timeout: float = 30.0,
        hops_callback: HeadersFor | None = None,
    ) -> OriginResponse:
        url = urlsplit(service_url)
        target = _join(url.path, path)
        clean = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
        if url.scheme == "https":
            return await self._h3(url, method, target, clean, body, origin_ca_file,
                                  origin_server_name, timeout, hops_callback, service_url)
        hop = Hop("connector-origin", "http/1.1", None, False)
        final = hops_callback(hop) if hops_callback else clean
        final = [(k, v) for k, v in final if k.lower() not in HOP_BY_HOP]
        return await self._h1(url, method, target, final, body, timeout, hop, service_url)

    async def _session(self, host: str, port: int, ca: str | None,
                       sni: str | None) -> HTTP3Session:
        key = (host, port, ca, sni)
        async with self._lock:
            entry = self._sessions.get(key)
            if entry is not None and not entry[1].closed:
                return entry[1]
            config = client_configuration(self.policy, cafile=ca, server_name=sni or host)
            cm = open_session(f"https://{_hostport(host, port)}", config)
            session = await cm.__aenter__()
            self._sessions[key] = (cm, session)
            return session

    async def _h3(self, url: Any, method: str, target: str, headers: list[tuple[str, str]],
                  body: AsyncIterator[bytes], ca: str | None, sni: str | None, timeout: float,
                  hops_callback: HeadersFor | None, service_url: str) -> OriginResponse:
        host, port = url.hostname or "127.0.0.1", url.port or 443
        try:
            session = await asyncio.wait_for(self._session(host, port, ca, sni), timeout)
        except asyncio.TimeoutError:
            raise OriginError(504, f"origin {service_url}: QUIC handshake timed out") from None
        except (ConnectionError, OSError) as exc:
            raise OriginError(502, f"origin {service_url}: HTTP/3 connection failed: "
                                   f"{exc or type(exc).__name__}") from None
        group = session.group
        hop = Hop("connector-origin", "quic", group.name if group else None,
                  bool(group and group.post_quantum))
        final = hops_callback(hop) if hops_callback else headers
        h3_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in final
                      if k.lower() not in HOP_BY_HOP]
        send_body = body if method.upper() in BODY_METHODS or _has_length(final) else None
        if send_body is None:
            asyncio.ensure_future(_drain(body))
        try:
            status, resp_headers, chunks = await session.stream_request(
                method, target, h3_headers, send_body, timeout=timeout)
        except asyncio.TimeoutError:
            raise OriginError(504, f"origin {service_url} did not answer in {timeout:.0f}s") \
                from None
        except (HTTP3Error, ConnectionError) as exc:
            raise OriginError(502, f"origin {service_url}: {exc}") from None
        return OriginResponse(
            status=status,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp_headers],
            body=chunks,
            hop=hop,
            _abort=lambda: None,
        )

    async def _h1(self, url: Any, method: str, target: str, headers: list[tuple[str, str]],
                  body: AsyncIterator[bytes], timeout: float, hop: Hop,
                  service_url: str) -> OriginResponse:
        host, port = url.hostname or "127.0.0.1", url.port or 80
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise OriginError(502, f"origin {service_url} refused the connection: "
                                   f"{exc or type(exc).__name__}") from None
        conn = h11.Connection(h11.CLIENT)
        has_body = method.upper() in BODY_METHODS or _has_length(headers)
        out_headers = [(k, v) for k, v in headers]
        if not any(k.lower() == "host" for k, _ in out_headers):
            out_headers.append(("host", _hostport(host, port)))
        if has_body and not _has_length(headers):
            out_headers.append(("transfer-encoding", "chunked"))
        out_headers.append(("connection", "close"))
        writer.write(conn.send(h11.Request(method=method, target=target, headers=out_headers)))

        async def upload() -> None:
            async for chunk in body:
                if has_body and chunk:
                    writer.write(conn.send(h11.Data(data=chunk)))
                    await writer.drain()
            if has_body:
                writer.write(conn.send(h11.EndOfMessage()))
            else:
                writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()

        uploading = asyncio.ensure_future(upload())

        async def next_event() -> Any:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await asyncio.wait_for(reader.read(READ_CHUNK), timeout)
                    conn.receive_data(data)
                    continue
                return event

        try:
            event = await next_event()
            while isinstance(event, h11.InformationalResponse):
                event = await next_event()
        except (asyncio.TimeoutError, h11.RemoteProtocolError, OSError) as exc:
            uploading.cancel()
            writer.close()
            status = 504 if isinstance(exc, asyncio.TimeoutError) else 502
            raise OriginError(status, f"origin {service_url}: no valid response "
                                      f"({exc or type(exc).__name__})") from None
        if not isinstance(event, h11.Response):
            uploading.cancel()
            writer.close()
            raise OriginError(502, f"origin {service_url}: unexpected {type(event).__name__}")

        def abort() -> None:
            uploading.cancel()
            writer.close()

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    ev = await next_event()
                    if isinstance(ev, h11.Data):
                        yield bytes(ev.data)
                    elif isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
                        return
            finally:
                abort()

        return OriginResponse(
            status=event.status_code,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers
                     if k.decode("latin-1").lower() not in HOP_BY_HOP],
            body=chunks(),
            hop=hop,
            _abort=abort,
        )

    # ------------------------------------------------------------------ WebSocket

    async def websocket(
        self,
        service_url: str,
        path: str,
        headers: list[tuple[str, str]],
        subprotocols: list[str],
        *,
        origin_ca_file: str | None = None,
        origin_server_name: str | None = None,
        timeout: float = 30.0,
    ) -> OriginWebSocket:
        url = urlsplit(service_url)
        host = url.hostname or "127.0.0.1"
        tls = url.scheme == "https"
        port = url.port or (443 if tls else 80)
        context = None
        if tls:
            context = ssl.create_default_context(cafile=origin_ca_file)
            context.set_alpn_protocols(["http/1.1"])
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                host, port, ssl=context,
                server_hostname=(origin_server_name or host) if tls else None), timeout)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            raise OriginError(502, f"origin {service_url}: WebSocket connection failed: "
                                   f"{exc or type(exc).__name__}") from None
        visitor_host = next((v for k, v in headers if k.lower() == "host"), host)
        extra = [(k.encode(), v.encode()) for k, v in headers
                 if k.lower() not in HOP_BY_HOP | {"host", "sec-websocket-key",
                                                   "sec-websocket-version",
                                                   "sec-websocket-extensions",
                                                   "sec-websocket-protocol"}]
        ws = WSConnection(ConnectionType.CLIENT)
        writer.write(ws.send(Request(host=visitor_host, target=_join(url.path, path),
                                     subprotocols=subprotocols, extra_headers=extra)))
        await writer.drain()
        origin = OriginWebSocket(ws, reader, writer,
                                 Hop("connector-origin", "tls/1.1" if tls else "http/1.1", None,
                                     False))
        await origin._handshake(timeout)
        return origin


class OriginWebSocket:
    def __init__(self, ws: WSConnection, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, hop: Hop) -> None:
        self._ws, self._reader, self._writer, self.hop = ws, reader, writer, hop
        self.status = 0
        self.subprotocol: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.close_code: int | None = None
        self._queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        self._pump: asyncio.Task[None] | None = None

    async def _handshake(self, timeout: float) -> None:
        while self.status == 0:
            data = await asyncio.wait_for(self._reader.read(READ_CHUNK), timeout)
            if not data:
                raise OriginError(502, "origin closed during the WebSocket handshake")
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, AcceptConnection):
                    self.status, self.subprotocol = 101, event.subprotocol
                elif isinstance(event, RejectConnection):
                    self.status = event.status_code
                    self._writer.close()
                    return
                else:
                    self._handle(event)
        self._pump = asyncio.ensure_future(self._read_loop())

    def _handle(self, event: Any) -> None:
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                self._queue.put_nowait("".join(self._text))
                self._text.clear()
        elif isinstance(event, BytesMessage):
            self._bytes.append(bytes(event.data))
            if event.message_finished:
                self._queue.put_nowait(b"".join(self._bytes))
                self._bytes.clear()
        elif isinstance(event, Ping):
            self._writer.write(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            self.close_code = event.code
            with contextlib.suppress(Exception):
                self._writer.write(self._ws.send(event.response()))
            self._queue.put_nowait(None)

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    break
                self._ws.receive_data(data)
                for event in self._ws.events():
                    self._handle(event)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._queue.put_nowait(None)

    async def send(self, message: str | bytes) -> None:
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        self._writer.write(self._ws.send(event))
        await self._writer.drain()

    async def receive(self) -> str | bytes | None:
        return await self._queue.get()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(Exception):
            self._writer.write(self._ws.send(CloseConnection(code=code, reason=reason)))
            await self._writer.drain()
        if self._pump is not None:
            self._pump.cancel()
        self._writer.close()


def _join(base: str, path: str) -> str:
    base = base.rstrip("/")
    return (base + path) if path.startswith("/") else f"{base}/{path}"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _has_length(headers: list[tuple[str, str]]) -> bool:
    return any(k.lower() == "content-length" for k, _ in headers)


async def _drain(body: AsyncIterator[bytes]) -> None:
    with contextlib.suppress(Exception):
        async for _ in body:
            pass
