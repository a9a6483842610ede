"""Real aioquic client/server pairs over UDP on 127.0.0.1, for the binding's tests.

Both sides are aioquic's own ``serve()`` and ``connect()``; a test only says how each side is
made post-quantum (a :class:`Peer`) and reads back what each side negotiated (an
:class:`Outcome`)::

    out = handshake(pki, server=Peer("require"), client=STOCK, fails=True)
    assert out.error.error_code == HANDSHAKE_FAILURE and out.server == []

The lower-level pieces (:func:`running_server`, :func:`connect_client`) serve tests where one
side is another stack (qh3) or a misbehaving server protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from waiting import wait_until_async

from pq_quic_plugin import configure, negotiated_group
from pq_quic_plugin.aioquic_binding.facade import quic_of, server_port

ALPN = "pq-test"
PING = b"ping over post-quantum QUIC"
#: Loopback answers in microseconds. aioquic assumes 100 ms before its first RTT sample, and a
#: connection that fails during the handshake then waits out a closing period of 3 x 2 x 100 ms
#: on each side; 10 ms keeps those periods short without touching what is negotiated.
INITIAL_RTT = 0.01

T = TypeVar("T")


# ------------------------------------------------------------------------------- configurations


def server_configuration(pki: Any, alpn: str = ALPN) -> QuicConfiguration:
    """A stock aioquic server configuration presenting the test PKI's leaf."""
    config = QuicConfiguration(is_client=False, alpn_protocols=[alpn], initial_rtt=INITIAL_RTT)
    config.load_cert_chain(str(pki.cert), str(pki.key))
    return config


def client_configuration(pki: Any, alpn: str = ALPN) -> QuicConfiguration:
    """A stock aioquic client configuration trusting the test PKI's CA, for ``localhost``."""
    config = QuicConfiguration(
        is_client=True, alpn_protocols=[alpn], server_name="localhost", initial_rtt=INITIAL_RTT
    )
    config.load_verify_locations(str(pki.ca_cert))
    config.verify_mode = ssl.CERT_REQUIRED
    return config


def sans_io_pair(pki: Any, alpn: str = "h3") -> tuple[QuicConnection, QuicConnection]:
    """A stock aioquic client and server as bare QuicConnections, not yet connected: for tests
    that move the datagrams between them in memory (sans-IO) and so choose every timestamp.
    aioquic's own defaults (no short initial RTT): those tests measure its timers as shipped."""
    client_config = QuicConfiguration(
        is_client=True, alpn_protocols=[alpn], server_name="localhost"
    )
    client_config.load_verify_locations(str(pki.ca_cert))
    server_config = QuicConfiguration(is_client=False, alpn_protocols=[alpn])
    server_config.load_cert_chain(str(pki.cert), str(pki.key))
    client = QuicConnection(configuration=client_config)
    server = QuicConnection(
        configuration=server_config,
        original_destination_connection_id=client.original_destination_connection_id,
    )
    return client, server


@dataclass(frozen=True)
class Peer:
    """How one side is made post-quantum: ``configure(config, policy, groups, key_shares)``.

    ``policy=None`` calls ``configure(config)`` with the library's defaults; ``stock=True`` does
    not call ``configure`` at all (plain aioquic). ``tweak`` runs last on the configuration, for
    tests that swap in a misbehaving part.
    """

    policy: str | None = None
    groups: Sequence[Any] | None = None
    key_shares: Sequence[Any] | None = None
    stock: bool = False
    tweak: Callable[[QuicConfiguration], None] | None = None

    def apply(self, config: QuicConfiguration) -> QuicConfiguration:
        if not self.stock:
            options: dict[str, Any] = {}
            if self.policy is not None:
                options["policy"] = self.policy
            if self.groups is not None:
                options["groups"] = list(self.groups)
            if self.key_shares is not None:
                options["key_shares"] = list(self.key_shares)
            configure(config, **options)
        if self.tweak is not None:
            self.tweak(config)
        return config


#: Stock aioquic: the binding never touches this side.
STOCK = Peer(stock=True)


# ------------------------------------------------------------------------------------ server


class EchoServerProtocol(QuicConnectionProtocol):
    """Echoes stream data; records what each handshake negotiated and how connections ended.

    :func:`running_server` gives every server its own ``results`` and ``closes`` lists.
    """

    results: list[dict[str, Any]] = []
    closes: list[events.ConnectionTerminated] = []

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            group = negotiated_group(self)
            self.results.append({"group": group.name if group else None, "retry": _retry(self)})
        elif isinstance(event, events.StreamDataReceived):
            quic_of(self).send_stream_data(event.stream_id, event.data, event.end_stream)
            self.transmit()
        elif isinstance(event, events.ConnectionTerminated):
            self.closes.append(event)


def _retry(protocol: QuicConnectionProtocol) -> bool:
    return bool(getattr(quic_of(protocol).tls, "pq_hello_retry", False))


@dataclass
class Server:
    port: int
    results: list[dict[str, Any]] = field(default_factory=list)
    """One ``{"group", "retry"}`` per completed handshake, as the server saw it."""
    closes: list[events.ConnectionTerminated] = field(default_factory=list)
    """How the server's connections ended."""


@contextlib.asynccontextmanager
async def running_server(
    configuration: QuicConfiguration,
    protocol: type[EchoServerProtocol] = EchoServerProtocol,
) -> AsyncIterator[Server]:
    """``aioquic.asyncio.serve`` on an ephemeral port of 127.0.0.1 for the block."""
    results: list[dict[str, Any]] = []
    closes: list[events.ConnectionTerminated] = []
    bound = type(f"Bound{protocol.__name__}", (protocol,), {"results": results, "closes": closes})
    server = await serve("127.0.0.1", 0, configuration=configuration, create_protocol=bound)
    try:
        yield Server(port=server_port(server), results=results, closes=closes)
    finally:
        server.close()


# ------------------------------------------------------------------------------------ client


@dataclass
class Outcome:
    """What one handshake ended with, from both sides."""

    group: str | None = None
    """The group the client recorded (None for a stock client, or when the handshake failed)."""
    retry: bool = False
    """Whether the client went through a HelloRetryRequest."""
    post_quantum: bool | None = None
    echo: bytes | None = None
    """What came back on a stream after the handshake (None when it failed)."""
    error: events.ConnectionTerminated | None = None
    """How the client's connection ended, when the handshake failed."""
    server: list[dict[str, Any]] = field(default_factory=list)
    """The server's completed handshakes (``{"group", "retry"}``), when the server is ours."""
    server_closes: list[events.ConnectionTerminated] = field(default_factory=list)
    """How the server's connections ended (filled in for failed handshakes)."""


class RecordingClientProtocol(QuicConnectionProtocol):
    """Keeps the ConnectionTerminated event, which aioquic's connect() turns into a bare error."""

    terminated: events.ConnectionTerminated | None = None

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.ConnectionTerminated):
            self.terminated = event
        super().quic_event_received(event)


async def echo_once(port: int, configuration: QuicConfiguration, timeout: float = 10.0) -> Outcome:
    """Connect, send one message on a stream, read it back; raise on handshake failure."""
    async with connect("127.0.0.1", port, configuration=configuration) as client:
        reader, writer = await client.create_stream()
        writer.write(PING)
        writer.write_eof()
        echo = await asyncio.wait_for(reader.read(), timeout)
        group = negotiated_group(client)
        return Outcome(
            group=group.name if group else None,
            retry=_retry(client),
            post_quantum=group.post_quantum if group else None,
            echo=echo,
        )


async def expect_handshake_failure(
    port: int, configuration: QuicConfiguration
) -> events.ConnectionTerminated:
    """Connect expecting the handshake to fail; return how the client's connection ended."""
    holder: list[RecordingClientProtocol] = []

    def factory(*args: Any, **kwargs: Any) -> RecordingClientProtocol:
        protocol = RecordingClientProtocol(*args, **kwargs)
        holder.append(protocol)
        return protocol

    try:
        async with connect("127.0.0.1", port, configuration=configuration, create_protocol=factory):
            pass
    except ConnectionError:
        pass
    else:
        raise AssertionError("the handshake succeeded but was expected to fail")
    event = holder[0].terminated
    assert event is not None, "connection failed without a ConnectionTerminated event"
    return event


async def connect_client(
    port: int, configuration: QuicConfiguration, fails: bool = False
) -> Outcome:
    """One client handshake against whatever listens on ``port`` (ours, stock, qh3)."""
    if fails:
        return Outcome(error=await expect_handshake_failure(port, configuration))
    return await echo_once(port, configuration)


# ---------------------------------------------------------------------------------- together


async def handshake_async(
    pki: Any,
    server: Peer = Peer(),  # noqa: B008 - frozen: one shared default is fine
    client: Peer = Peer(),  # noqa: B008
    *,
    fails: bool = False,
    alpn: str = ALPN,
    server_protocol: type[EchoServerProtocol] = EchoServerProtocol,
) -> Outcome:
    """Serve as ``server``, connect as ``client``, report what both sides saw.

    With ``fails``, the handshake must fail (``AssertionError`` otherwise) and the outcome also
    waits for, and carries, the server's side of the close.
    """
    server_config = server.apply(server_configuration(pki, alpn))
    client_config = client.apply(client_configuration(pki, alpn))
    async with running_server(server_config, server_protocol) as srv:
        outcome = await connect_client(srv.port, client_config, fails)
        if fails:
            await wait_until_async(
                lambda: srv.closes, 5, "the server's side of the failed handshake to close"
            )
        outcome.server, outcome.server_closes = list(srv.results), list(srv.closes)
    return outcome


def handshake(
    pki: Any,
    server: Peer = Peer(),  # noqa: B008
    client: Peer = Peer(),  # noqa: B008
    **options: Any,
) -> Outcome:
    """:func:`handshake_async` from synchronous test code."""
    return run(lambda: handshake_async(pki, server, client, **options))


def run(coro_factory: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """Run a scenario in a fresh event loop, bounded in time."""

    async def main() -> T:
        return await asyncio.wait_for(coro_factory(), timeout)

    return asyncio.run(main())


# ------------------------------------------------------------------------------ error codes


#: CRYPTO_ERROR carrying a TLS alert (RFC 9001 4.8): 0x100 + alert.
def crypto_error(alert: int) -> int:
    return 0x100 + alert


ILLEGAL_PARAMETER = crypto_error(47)
HANDSHAKE_FAILURE = crypto_error(40)
UNEXPECTED_MESSAGE = crypto_error(10)
