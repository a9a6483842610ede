"""Real aioquic client/server pairs over UDP on 127.0.0.1, for the binding's tests.

Both sides are aioquic's own ``serve()`` and ``connect()``; the test only chooses how each
configuration is made post-quantum and reads back what each side negotiated.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

from pq_quic_plugin import negotiated_group

ALPN = "pq-test"


class EchoServerProtocol(QuicConnectionProtocol):
    """Echoes stream data and remembers what each handshake negotiated."""

    results: list[dict] = []

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            group = negotiated_group(self)
            self.results.append(
                {"group": group.name if group else None, "retry": _retry(self)}
            )
        elif isinstance(event, events.StreamDataReceived):
            self._quic.send_stream_data(event.stream_id, event.data, event.end_stream)
            self.transmit()


def _retry(protocol: QuicConnectionProtocol) -> bool:
    return bool(getattr(protocol._quic.tls, "pq_hello_retry", False))


@dataclass
class Server:
    port: int
    results: list[dict] = field(default_factory=list)


def server_configuration(pki) -> QuicConfiguration:  # type: ignore[no-untyped-def]
    config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    config.load_cert_chain(str(pki.cert), str(pki.key))
    return config


def client_configuration(pki) -> QuicConfiguration:  # type: ignore[no-untyped-def]
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], server_name="localhost")
    config.load_verify_locations(str(pki.ca_cert))
    config.verify_mode = ssl.CERT_REQUIRED
    return config


@contextlib.asynccontextmanager
async def running_server(
    configuration: QuicConfiguration,
    protocol: type[EchoServerProtocol] = EchoServerProtocol,
) -> AsyncIterator[Server]:
    results: list[dict] = []
    cls = type("BoundEcho", (protocol,), {"results": results})
    server = await serve("127.0.0.1", 0, configuration=configuration, create_protocol=cls)
    port = server._transport.get_extra_info("sockname")[1]
    try:
        yield Server(port=port, results=results)
    finally:
        server.close()


@dataclass
class ClientResult:
    group: str | None
    retry: bool
    echo: bytes
    post_quantum: bool | None


async def echo_once(
    port: int, configuration: QuicConfiguration, timeout: float = 10.0
) -> ClientResult:
    """Connect, send one message on a stream, read it back; raise on handshake failure."""
    async with connect(
        "127.0.0.1", port, configuration=configuration, wait_connected=True
    ) as client:
        reader, writer = await client.create_stream()
        writer.write(b"ping over post-quantum QUIC")
        writer.write_eof()
        echo = await asyncio.wait_for(reader.read(), timeout)
        group = negotiated_group(client)
        return ClientResult(
            group=group.name if group else None,
            retry=_retry(client),
            echo=echo,
            post_quantum=group.post_quantum if group else None,
        )


def run(coro_factory: Callable[[], object], timeout: float = 30.0):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        return await asyncio.wait_for(coro_factory(), timeout)  # type: ignore[arg-type]

    return asyncio.run(main())


class RecordingClientProtocol(QuicConnectionProtocol):
    """Keeps the ConnectionTerminated event, which aioquic's connect() turns into a bare error."""

    terminated: events.ConnectionTerminated | None = None

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.ConnectionTerminated):
            self.terminated = event
        super().quic_event_received(event)


async def expect_handshake_failure(
    port: int, configuration: QuicConfiguration
) -> events.ConnectionTerminated:
    """Connect expecting the handshake to fail; return how the connection ended."""
    holder: list[RecordingClientProtocol] = []

    def factory(*args, **kwargs):  # type: ignore[no-untyped-def]
        protocol = RecordingClientProtocol(*args, **kwargs)
        holder.append(protocol)
        return protocol

    try:
        async with connect(
            "127.0.0.1", port, configuration=configuration, create_protocol=factory
        ):
            pass
    except ConnectionError:
        pass
    else:
        raise AssertionError("the handshake succeeded but was expected to fail")
    event = holder[0].terminated
    assert event is not None, "connection failed without a ConnectionTerminated event"
    return event


class RecordingServerProtocol(EchoServerProtocol):
    """Also remembers how server-side connections ended."""

    terminations: list[events.ConnectionTerminated] = []

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.ConnectionTerminated):
            self.terminations.append(event)
        super().quic_event_received(event)


#: CRYPTO_ERROR carrying a TLS alert (RFC 9001 4.8): 0x100 + alert.
def crypto_error(alert: int) -> int:
    return 0x100 + alert


ILLEGAL_PARAMETER = crypto_error(47)
HANDSHAKE_FAILURE = crypto_error(40)
UNEXPECTED_MESSAGE = crypto_error(10)
