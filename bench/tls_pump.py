"""A TLS client and server over memory BIOs in one process, records handed across by hand.

The TCP twin of :mod:`.sansio_pump`: both ends come from ``SSLContext.wrap_bio`` (Python's
``ssl`` or the post-quantum layer, which asyncio, trio and anyio drive the same way), and the
pump moves whatever one side wrote into the other's incoming BIO, one flight at a time. No
socket, no event loop: the CPU time measured around each side's calls is that side's TLS work
and the layer's Python around it, nothing else.

One exchange is a full handshake plus one byte each way. The byte makes the server finish its
handshake (it needs the client's Finished) and send its session tickets, and makes the client
read them, so both sides do all the work a real connection's handshake costs them.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import Any

SERVER_NAME = "localhost"
MAX_FLIGHTS = 10


class PumpFailed(RuntimeError):
    """The pair did not finish: a broken variant stops the run instead of timing nothing."""


@dataclass
class TlsPair:
    """What one exchange cost, and the two TLS objects (to ask what was negotiated)."""

    client_ns: int
    server_ns: int
    flights: int
    client: Any
    server: Any

    @property
    def total_ns(self) -> int:
        return self.client_ns + self.server_ns


def _step(tls: Any, done: bool) -> tuple[bool, bool, bytes]:
    """Advance one side: finish the handshake if it can, then read what is there. Returns
    whether the handshake is done, whether it just finished, and the bytes read."""
    finished = False
    if not done:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            return False, False, b""
        done = finished = True
    try:
        return done, finished, tls.read(1024)
    except ssl.SSLWantReadError:
        return done, finished, b""


def run_tls_pair(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> TlsPair:
    """Handshake, then one byte client to server and one back, entirely in memory."""
    clock = time.process_time_ns
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    t0 = clock()
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False, server_hostname=SERVER_NAME)
    t1 = clock()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    t2 = clock()
    client_ns, server_ns = t1 - t0, t2 - t1
    c_done = s_done = answered = False
    for flight in range(1, MAX_FLIGHTS + 1):
        t0 = clock()
        c_done, finished, reply = _step(client, c_done)
        if finished:
            client.write(b"?")
        data = c_out.read()
        t1 = clock()
        client_ns += t1 - t0
        if reply:
            return TlsPair(client_ns, server_ns, flight, client, server)
        if data:
            s_in.write(data)
        s_done, _, request = _step(server, s_done)
        if request and not answered:
            server.write(b"!")
            answered = True
        back = s_out.read()
        t2 = clock()
        server_ns += t2 - t1
        if back:
            c_in.write(back)
        elif not data:
            raise PumpFailed(f"stalled after {flight} flights (handshake done: {c_done}/{s_done})")
    raise PumpFailed(f"no reply after {MAX_FLIGHTS} flights")
