"""A UDP relay on 127.0.0.1 that delays every datagram, standing in for ``tc netem``.

The wire benchmark's time to first byte needs a real round-trip time, and this kernel has no
netem; a relay in the benchmark's own event loop adds the delay with about 1 ms of jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any


class DelayRelay:
    """A UDP relay on 127.0.0.1 that delays every datagram, each way, by ``delay`` seconds.

    One upstream socket per client address, so the server sees distinct peers. This stands in
    for ``tc netem`` (not available in this kernel); scheduling jitter is about 1 ms.
    """

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target = target
        self.delay = delay
        self.forwarded = 0
        self._loop = asyncio.get_running_loop()
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._front.bind(("127.0.0.1", 0))
        self._front.setblocking(False)
        self.port = self._front.getsockname()[1]
        self._upstreams: dict[Any, socket.socket] = {}
        self._loop.add_reader(self._front.fileno(), self._from_client)

    def _send(self, sock: socket.socket, data: bytes, addr: Any) -> None:
        with contextlib.suppress(OSError):
            sock.sendto(data, addr)
            self.forwarded += 1

    def _from_client(self) -> None:
        while True:
            try:
                data, addr = self._front.recvfrom(65536)
            except (BlockingIOError, OSError):
                return
            up = self._upstreams.get(addr)
            if up is None:
                up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                up.bind(("127.0.0.1", 0))
                up.setblocking(False)
                self._upstreams[addr] = up
                self._loop.add_reader(up.fileno(), self._from_server, up, addr)
            self._loop.call_later(self.delay, self._send, up, data, self.target)

    def _from_server(self, up: socket.socket, client_addr: Any) -> None:
        while True:
            try:
                data, _ = up.recvfrom(65536)
            except (BlockingIOError, OSError):
                return
            self._loop.call_later(self.delay, self._send, self._front, data, client_addr)

    def close(self) -> None:
        for sock in [self._front, *self._upstreams.values()]:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
            sock.close()
