"""The HTTP/3 client (pq_quic_plugin.http3) against a real aioquic HTTP/3 server on 127.0.0.1.

The server is scripted per path so that it can misbehave on cue: reset a stream before the
response head or in the middle of the body, stop reading an upload, answer early, go silent,
close the connection. Every scenario runs in both request styles (``request``: the whole body;
``stream``: the body as it arrives), because they are meant to be one request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

import pq_quic_plugin
from pq_quic_plugin.aioquic_binding.facade import quic_of, server_port
from pq_quic_plugin.devcert import DevPKI
from pq_quic_plugin.http3 import (
    ConnectError,
    ConnectionClosedError,
    HandshakeError,
    HTTP3Error,
    HTTP3Session,
    ReadTimeout,
    StreamResetError,
    TimeoutException,
    client_configuration,
    fetch,
    open_session,
)

T = TypeVar("T")

STYLES = ("request", "stream")
PART = 3000  # body bytes the server sends before resetting the stream
MB = 1 << 20
#: How long a failure may take to surface. The server acts within 0.2 s; the old client
#: waited out the whole request timeout (TIMEOUT) for a reset it did not look at.
PROMPT = 2.0
TIMEOUT = 10.0
CLOSE_CODE = 0x1234


class ScriptedServer(QuicConnectionProtocol):
    """An HTTP/3 server whose behaviour is chosen by the request path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(quic_of(self))
        self.echoing: set[int] = set()

    def quic_event_received(self, event: events.QuicEvent) -> None:
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            self._route(event.stream_id, dict(event.headers)[b":path"].decode(), event.stream_ended)
        elif isinstance(event, DataReceived) and event.stream_id in self.echoing:
            self.h3.send_data(event.stream_id, event.data, end_stream=event.stream_ended)
        self.transmit()

    def _answer(self, stream_id: int, body: bytes, status: int = 200) -> None:
        self.h3.send_headers(
            stream_id,
            [(b":status", str(status).encode()), (b"content-length", str(len(body)).encode())],
        )
        self.h3.send_data(stream_id, body, end_stream=True)

    def _route(self, stream_id: int, path: str, ended: bool) -> None:
        quic = quic_of(self)
        loop = asyncio.get_running_loop()
        if path == "/hello":
            self._answer(stream_id, b"hello")
        elif path == "/informational":
            self.h3.send_headers(stream_id, [(b":status", b"103"), (b"link", b"</a>")])
            self._answer(stream_id, b"final")
        elif path == "/echo":
            self.h3.send_headers(stream_id, [(b":status", b"200")])
            if ended:
                self.h3.send_data(stream_id, b"", end_stream=True)
            else:
                self.echoing.add(stream_id)
        elif path == "/reset-before-head":
            quic.reset_stream(stream_id, ErrorCode.H3_REQUEST_REJECTED)
        elif path == "/reset-mid-body":
            self.h3.send_headers(stream_id, [(b":status", b"200")])
            self.h3.send_data(stream_id, b"x" * PART, end_stream=False)

            def reset() -> None:
                quic.reset_stream(stream_id, ErrorCode.H3_INTERNAL_ERROR)
                self.transmit()

            loop.call_later(0.2, reset)  # the head and the first bytes arrive first
        elif path == "/stop-reading":
            quic.stop_stream(stream_id, ErrorCode.H3_REQUEST_REJECTED)  # and never answers
        elif path == "/early-answer":
            # RFC 9114 4.1.1: a complete answer before the whole request, then STOP_SENDING
            # with H3_NO_ERROR. That is a success, not a failure.
            self._answer(stream_id, b"early", status=413)
            quic.stop_stream(stream_id, ErrorCode.H3_NO_ERROR)
        elif path == "/close":
            quic.close(error_code=CLOSE_CODE, reason_phrase="closing on purpose")
        # "/silent" and anything else: no answer at all


@contextlib.asynccontextmanager
async def h3_server(pki: DevPKI, policy: str = "prefer") -> AsyncIterator[int]:
    config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    config.load_cert_chain(str(pki.cert), str(pki.key))
    if policy != "off":
        pq_quic_plugin.configure(config, policy)
    server = await serve("127.0.0.1", 0, configuration=config, create_protocol=ScriptedServer)
    try:
        yield server_port(server)
    finally:
        server.close()


@contextlib.asynccontextmanager
async def session_to(pki: DevPKI, policy: str = "prefer") -> AsyncIterator[HTTP3Session]:
    async with h3_server(pki) as port:
        config = client_configuration(policy, cafile=str(pki.ca_cert), server_name="localhost")
        async with open_session(f"https://127.0.0.1:{port}", config) as session:
            yield session


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(scenario(), 60)

    return asyncio.run(main())


async def exchange(
    session: HTTP3Session,
    style: str,
    method: str,
    path: str,
    body: bytes | AsyncIterator[bytes] | None = None,
    timeout: float = TIMEOUT,
) -> tuple[int, bytes]:
    """One request in the given style; (status, whole body)."""
    if style == "request":
        response = await session.request(method, path, (), body, timeout=timeout)
        return response.status, response.body
    async with session.stream(method, path, (), body, timeout=timeout) as streamed:
        return streamed.status, b"".join([chunk async for chunk in streamed.body])


async def endless(chunk: int = 16384) -> AsyncIterator[bytes]:
    while True:
        yield b"u" * chunk
        await asyncio.sleep(0)


async def produced(total: int, chunk: int = 65536) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = bytes([sent // chunk % 251]) * min(chunk, total - sent)
        sent += len(piece)
        yield piece


async def failure(request: Awaitable[Any]) -> tuple[BaseException, float]:
    """The exception ``request`` raises and how long it took to raise it."""
    start = time.monotonic()
    try:
        await request
    except Exception as exc:  # noqa: BLE001 - returned for the test to inspect
        return exc, time.monotonic() - start
    raise AssertionError("the request succeeded but was expected to fail")


async def still_usable(session: HTTP3Session) -> None:
    """The same connection still serves requests after one of them failed."""
    assert not session.closed
    assert (await session.request("GET", "/hello", timeout=5)).body == b"hello"


# ---------------------------------------------------------------------------- success


@pytest.mark.parametrize("style", STYLES)
def test_get_in_both_styles(pki: DevPKI, style: str) -> None:
    async def scenario() -> tuple[tuple[int, bytes], str | None]:
        async with session_to(pki) as session:
            return await exchange(session, style, "GET", "/hello"), (
                session.group.name if session.group else None
            )

    (status, body), group = run(scenario)
    assert (status, body) == (200, b"hello")
    assert group == "X25519MLKEM768"


def test_whole_response_carries_headers_and_group(pki: DevPKI) -> None:
    async def scenario() -> Any:
        async with h3_server(pki) as port:
            return await fetch(
                f"https://localhost:{port}/hello",
                "require",
                cafile=str(pki.ca_cert),
                timeout=TIMEOUT,
            )

    response = run(scenario)
    assert response.status == 200 and response.body == b"hello"
    assert response.header("Content-Length") == "5" and response.http_version == "3"
    assert response.group is not None and response.group.post_quantum


@pytest.mark.parametrize("style", STYLES)
def test_post_echo_in_both_styles(pki: DevPKI, style: str) -> None:
    async def scenario() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        async with session_to(pki) as session:
            small = await exchange(session, style, "POST", "/echo", b"ping")
            # more than a receive window and the send-buffer mark: flow control both ways
            large = await exchange(session, style, "POST", "/echo", produced(3 * MB))
            return small, large

    small, large = run(scenario)
    assert small == (200, b"ping")
    expected = b"".join(bytes([i % 251]) * 65536 for i in range(3 * MB // 65536))
    assert large[0] == 200 and len(large[1]) == 3 * MB and large[1] == expected


@pytest.mark.parametrize("style", STYLES)
def test_informational_heads_are_skipped(pki: DevPKI, style: str) -> None:
    async def scenario() -> tuple[int, bytes]:
        async with session_to(pki) as session:
            return await exchange(session, style, "GET", "/informational")

    assert run(scenario) == (200, b"final")


@pytest.mark.parametrize("style", STYLES)
def test_an_early_answer_with_stop_sending_no_error_is_a_success(pki: DevPKI, style: str) -> None:
    async def scenario() -> tuple[int, bytes]:
        async with session_to(pki) as session:
            answer = await exchange(session, style, "POST", "/early-answer", endless())
            await still_usable(session)
            return answer

    assert run(scenario) == (413, b"early")


def test_stream_context_manager_cancels_an_unread_body(pki: DevPKI) -> None:
    async def scenario() -> int:
        async with session_to(pki) as session:
            async with session.stream("POST", "/echo", body=endless()) as response:
                status = response.status
                await response.body.__anext__()
            await still_usable(session)
            return status

    assert run(scenario) == 200


# ---------------------------------------------------------------------------- resets


@pytest.mark.parametrize(
    "path, code",
    [
        ("/reset-before-head", ErrorCode.H3_REQUEST_REJECTED),
        ("/reset-mid-body", ErrorCode.H3_INTERNAL_ERROR),
    ],
    ids=["before-the-head", "in-the-middle-of-the-body"],
)
@pytest.mark.parametrize("style", STYLES)
def test_reset_fails_at_once(pki: DevPKI, style: str, path: str, code: ErrorCode) -> None:
    """A reset before the head or in the middle of the body fails the exchange with the
    origin's error code at once, not after the request timeout, and the session goes on."""

    async def scenario() -> tuple[BaseException, float]:
        async with session_to(pki) as session:
            caught = await failure(exchange(session, style, "GET", path))
            await still_usable(session)
            return caught

    error, elapsed = run(scenario)
    assert isinstance(error, StreamResetError), repr(error)
    assert error.error_code == code
    assert "reset" in str(error)
    assert elapsed < PROMPT, f"took {elapsed:.1f}s (request timeout {TIMEOUT:g}s)"


def test_streamed_body_raises_the_reset_after_the_head_and_first_bytes(pki: DevPKI) -> None:
    async def scenario() -> tuple[int, int, BaseException | None]:
        async with session_to(pki) as session:
            received, error = 0, None
            async with session.stream("GET", "/reset-mid-body") as response:
                try:
                    async for chunk in response.body:
                        received += len(chunk)
                except HTTP3Error as exc:
                    error = exc
            await still_usable(session)
            return response.status, received, error

    status, received, error = run(scenario)
    assert status == 200 and received == PART
    assert isinstance(error, StreamResetError) and error.error_code == ErrorCode.H3_INTERNAL_ERROR


@pytest.mark.parametrize("style", STYLES)
def test_stop_sending_with_an_error_fails_at_once(pki: DevPKI, style: str) -> None:
    async def scenario() -> tuple[BaseException, float]:
        async with session_to(pki) as session:
            caught = await failure(exchange(session, style, "POST", "/stop-reading", endless()))
            await still_usable(session)
            return caught

    error, elapsed = run(scenario)
    assert isinstance(error, StreamResetError), repr(error)
    assert error.error_code == ErrorCode.H3_REQUEST_REJECTED
    assert elapsed < PROMPT


@pytest.mark.parametrize("style", STYLES)
def test_closed_connection_fails_at_once(pki: DevPKI, style: str) -> None:
    async def scenario() -> tuple[BaseException, float, bool]:
        async with session_to(pki) as session:
            error, elapsed = await failure(exchange(session, style, "GET", "/close"))
            later, _ = await failure(session.request("GET", "/hello"))
            assert isinstance(later, ConnectionClosedError)
            return error, elapsed, session.closed

    error, elapsed, closed = run(scenario)
    assert isinstance(error, ConnectionClosedError), repr(error)
    assert error.error_code == CLOSE_CODE and "closing on purpose" in str(error)
    assert elapsed < PROMPT and closed


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("style", STYLES)
def test_silent_server_is_a_read_timeout(pki: DevPKI, style: str) -> None:
    async def scenario() -> tuple[BaseException, float]:
        async with session_to(pki) as session:
            caught = await failure(exchange(session, style, "GET", "/silent", timeout=0.5))
            await still_usable(session)
            return caught

    error, elapsed = run(scenario)
    assert isinstance(error, ReadTimeout), repr(error)
    assert 0.4 < elapsed < PROMPT


def test_post_quantum_refusal_is_a_handshake_error(pki: DevPKI) -> None:
    async def scenario() -> BaseException:
        async with h3_server(pki, policy="off") as port:  # a classical-only server
            config = client_configuration(
                "require", cafile=str(pki.ca_cert), server_name="localhost"
            )
            caught, _ = await failure(
                open_session(f"https://127.0.0.1:{port}", config).__aenter__()
            )
            return caught

    error = run(scenario)
    assert isinstance(error, HandshakeError), repr(error)
    assert error.error_code is not None and 0x100 <= error.error_code < 0x200


def test_every_failure_is_an_http3_error() -> None:
    families = {
        ConnectError: ConnectionError,
        HandshakeError: ConnectError,
        StreamResetError: HTTP3Error,
        ConnectionClosedError: HTTP3Error,
        ReadTimeout: TimeoutException,
    }
    for cls, parent in families.items():
        assert issubclass(cls, parent) and issubclass(cls, HTTP3Error), cls
    # callers written against the earlier client catch the same failures
    assert issubclass(HTTP3Error, ConnectionError)
    assert issubclass(ReadTimeout, asyncio.TimeoutError)
    reset = StreamResetError(4, 0x10C, "the server reset the stream")
    assert reset.error_code == 0x10C and reset.stream_id == 4 and "0x10c" in str(reset)
