"""A raw HTTP/2 origin over TLS that answers some paths with malformed response heads.

Run as ``python tests/h2_raw_origin.py PORT CERT KEY``. No HTTP server sends a malformed head
on purpose, so this one is written on the ``h2`` library directly, with its outbound checks
and normalising off so that what a path asks for is what goes on the wire:

* ``/ok``: ``200`` with the body ``ok N`` where N numbers the TCP connection it came on (the
  test tells from it that every request shared one connection).
* ``/slow``: ``200`` and a body of :data:`SLOW_PIECES` pieces ``x`` * 1024, one every 20 ms (a
  request that is still in flight while others fail).
* ``/bad/NAME``: the head ``MALFORMED[NAME]`` (each one a case of RFC 9113 8.1.1), then a body;
  ``/bad-trailers/NAME``: a good head and body, then the trailer section ``MALFORMED[NAME]``.
"""

from __future__ import annotations

import asyncio
import ssl
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions

Header = tuple[bytes, bytes]
OK: list[Header] = [(b":status", b"200"), (b"content-type", b"text/plain")]
SLOW_PIECES = 16

#: Each malformed head by name: what h2 would refuse as a connection error on its side.
MALFORMED: dict[str, list[Header]] = {
    "upper-case-name": [*OK, (b"X-Upper", b"1")],
    "connection": [*OK, (b"connection", b"keep-alive")],
    "keep-alive": [*OK, (b"keep-alive", b"timeout=5")],
    "transfer-encoding": [*OK, (b"transfer-encoding", b"chunked")],
    "upgrade": [*OK, (b"upgrade", b"h2c")],
    "te": [*OK, (b"te", b"gzip")],
    "duplicate-status": [*OK, (b":status", b"200")],
    "pseudo-after-regular": [(b"content-type", b"text/plain"), (b":status", b"200")],
    "request-pseudo": [*OK, (b":path", b"/")],
    "unknown-pseudo": [*OK, (b":foo", b"bar")],
    "no-status": [(b"content-type", b"text/plain")],
    "status-not-a-number": [(b":status", b"abc")],
    "colon-in-name": [*OK, (b"x:y", b"1")],
    "space-in-name": [*OK, (b"x y", b"1")],
    "empty-name": [*OK, (b"", b"1")],
    "nul-in-value": [*OK, (b"x-v", b"a\x00b")],
    "lf-in-value": [*OK, (b"x-v", b"a\nb")],
    "value-with-space-around": [*OK, (b"x-v", b" a")],
}
#: Trailer sections that are malformed (pseudo-headers, bad names).
MALFORMED_TRAILERS: dict[str, list[Header]] = {
    "pseudo": [(b":status", b"200")],
    "upper-case-name": [(b"X-Trailer", b"1")],
}


class Origin:
    """One TCP connection: an h2 server connection answering by path."""

    connections = 0

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        Origin.connections += 1
        self.number = Origin.connections
        self.writer = writer
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.conn = h2.connection.H2Connection(config)
        self.tasks: set[asyncio.Task[None]] = set()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def answer(self, stream_id: int, path: str) -> None:
        name = path.rsplit("/", 1)[-1]
        if path == "/ok":
            self.reply(stream_id, OK, b"ok %d" % self.number)
        elif path == "/slow":
            task = asyncio.ensure_future(self.slow(stream_id))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif path.startswith("/bad/") and name in MALFORMED:
            self.reply(stream_id, MALFORMED[name], b"malformed")
        elif path.startswith("/bad-trailers/") and name in MALFORMED_TRAILERS:
            self.conn.send_headers(stream_id, OK)
            self.conn.send_data(stream_id, b"body")
            self.conn.send_headers(stream_id, MALFORMED_TRAILERS[name], end_stream=True)
        else:
            self.reply(stream_id, [(b":status", b"404")], b"not found")
        self.flush()

    def reply(self, stream_id: int, headers: list[Header], body: bytes) -> None:
        self.conn.send_headers(stream_id, headers)
        self.conn.send_data(stream_id, body, end_stream=True)

    async def slow(self, stream_id: int) -> None:
        self.conn.send_headers(stream_id, OK)
        self.flush()
        for i in range(SLOW_PIECES):
            await asyncio.sleep(0.02)
            self.conn.send_data(stream_id, b"x" * 1024, end_stream=i == SLOW_PIECES - 1)
            self.flush()

    async def serve(self, reader: asyncio.StreamReader) -> None:
        self.conn.initiate_connection()
        self.flush()
        while data := await reader.read(65536):
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    path = dict(event.headers).get(b":path", b"/").decode()
                    self.answer(event.stream_id, path)
                elif isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
            self.flush()
            await self.writer.drain()


async def main(port: int, cert: str, key: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await Origin(writer).serve(reader)
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError) as exc:
            print(f"connection ended: {exc!r}", flush=True)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=context)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
    except KeyboardInterrupt:
        pass
