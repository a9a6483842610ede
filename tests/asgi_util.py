"""Plain ASGI scopes and callables for the PostQuantumMiddleware tests and the edge's
in-process tests (no server).

The scopes below are exactly what hypercorn-pq promises (see docs/hypercorn.md), so the
middleware is tested without a server; the end-to-end runs through real hypercorn-pq processes
live elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

Message = dict[str, Any]
App = Callable[[Any, Any, Any], Awaitable[None]]

EXAMPLE_APP = Path(__file__).resolve().parent.parent / "examples" / "asgi_app" / "app.py"
CERT = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
TLS = {
    "server_cert": CERT,
    "tls_version": 0x0304,
    "cipher_suite": 0x1302,
    "client_cert_chain": [],
    "client_cert_name": None,
    "client_cert_error": None,
}
PQ = {
    "transport": "quic",
    "group": "X25519MLKEM768",
    "codepoint": 4588,
    "post_quantum": True,
    "group_known": True,
}
CLASSICAL = {
    "transport": "quic",
    "group": "x25519",
    "codepoint": 0x1D,
    "post_quantum": False,
    "group_known": True,
}
TCP = {
    "transport": "tcp",
    "group": None,
    "codepoint": None,
    "post_quantum": False,
    "group_known": False,
    "note": "key-exchange group unknown on TCP",
}
#: hypercorn-pq's TCP listener with --pq: the post-quantum layer reports the group.
TCP_PQ = {**PQ, "transport": "tcp"}
TCP_CLASSICAL = {**CLASSICAL, "transport": "tcp"}
ABSENT = None  # stock hypercorn, plain http: no pq_quic at all


def make_scope(
    pq: dict | None = PQ,
    kind: str = "http",
    *,
    http_version: str | None = None,
    method: str = "GET",
    path: str = "/",
    headers: Iterable[tuple[bytes, bytes]] = (),
    client: tuple[str, int] | None = ("198.51.100.7", 50123),
    server: tuple[str, int | None] | None = ("127.0.0.1", 8443),
    hops: list[dict] | None = None,
    tls: bool = True,
    extensions: dict | None = None,
) -> dict[str, Any]:
    if http_version is None:
        http_version = "3" if pq is not None and pq.get("transport") == "quic" else "2"
    ext: dict[str, Any] = dict(extensions or {})
    if tls and pq is not None:
        ext["tls"] = dict(TLS)
    if pq is not None:
        ext["pq_quic"] = dict(pq)
        if hops is not None:
            ext["pq_quic"]["hops"] = hops
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "scheme": ("https" if tls else "http") if kind == "http" else ("wss" if tls else "ws"),
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost:8443"), *headers],
        "client": client,
        "server": server,
        "extensions": ext,
    }
    if kind == "http":
        scope["method"] = method
    return scope


def hop(name: str, post_quantum: bool, transport: str = "quic") -> dict[str, Any]:
    return {
        "hop": name,
        "transport": transport,
        "post_quantum": post_quantum,
        "group": "X25519MLKEM768" if post_quantum else "x25519",
    }


class Exchange:
    """One ASGI call: scripted incoming messages, recorded outgoing ones. After the script, the
    client stays until the response is over (like a server), or with ``gone`` has left."""

    def __init__(self, incoming: Iterable[Message] = (), *, gone: bool = False) -> None:
        self.incoming = list(incoming)
        self.sent: list[Message] = []
        self.received = 0
        self.done = asyncio.Event()
        self.gone = gone

    async def receive(self) -> Message:
        self.received += 1
        if self.incoming:
            return self.incoming.pop(0)
        if not self.gone:
            await self.done.wait()  # like a server: nothing more until the response is over
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] in (
            "http.response.body",
            "websocket.http.response.body",
        ) and not message.get("more_body"):
            self.done.set()
        if message["type"] == "websocket.close":
            self.done.set()

    # ---- reading the result
    @property
    def start(self) -> Message:
        return next(m for m in self.sent if m["type"].endswith("http.response.start"))

    @property
    def status(self) -> int:
        return int(self.start["status"])

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.start["headers"] if bytes(k).lower() == name.encode()]
        return bytes(values[-1]).decode() if values else None

    def headers(self, name: str) -> list[str]:
        return [
            bytes(v).decode() for k, v in self.start["headers"] if bytes(k).lower() == name.encode()
        ]

    @property
    def body(self) -> bytes:
        return b"".join(
            m.get("body", b"") for m in self.sent if m["type"].endswith("http.response.body")
        )

    @property
    def text(self) -> str:
        return self.body.decode()


async def call(app: App, scope: dict[str, Any], body: bytes = b"") -> Exchange:
    """``app`` on ``scope`` in the running loop: a request of ``body`` in one message, and then
    a client that has gone (``http.disconnect`` at once)."""
    exchange = Exchange([{"type": "http.request", "body": body, "more_body": False}], gone=True)
    await app(scope, exchange.receive, exchange.send)
    return exchange


def run(app: App, scope: dict[str, Any], incoming: Iterable[Message] | None = None) -> Exchange:
    if incoming is None:  # what a server delivers for a request without a body
        incoming = [{"type": "http.request", "body": b"", "more_body": False}]
    exchange = Exchange(incoming)

    async def go() -> None:
        await asyncio.wait_for(app(scope, exchange.receive, exchange.send), 5)

    asyncio.run(go())
    return exchange


class Recorder:
    """An ASGI app that records its calls and streams ``a``, ``b``, ``c`` (with trailers)."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            await send({"type": "lifespan.startup.complete"})
            return
        if scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "trailers": True,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        for part in (b"a", b"b", b"c"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"x-sum", b"abc")],
                "more_trailers": False,
            }
        )

    @property
    def called(self) -> bool:
        return bool(self.scopes)
