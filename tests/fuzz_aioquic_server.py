"""A ``configure()``\\ d aioquic server (``aioquic.asyncio.serve``) as a process of its own.

The fuzz test needs the server in another process, to read its stderr (no traceback may appear)
and its memory (``/proc/PID/status``)::

    python tests/fuzz_aioquic_server.py PORT CERT KEY [--broken-group] [--idle-timeout S]

It echoes stream data back (so a clean handshake can be checked end to end), logs at WARNING,
and on SIGUSR1 prints one line: how many connections the server's table holds and how many
ended (``ConnectionTerminated``), which shows whether failed connections are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pq_quic_plugin  # noqa: E402

ALPN = "pq-fuzz"
_terminated = 0


class Echo(QuicConnectionProtocol):
    def quic_event_received(self, event: events.QuicEvent) -> None:
        global _terminated
        if isinstance(event, events.StreamDataReceived):
            self._quic.send_stream_data(event.stream_id, event.data, event.end_stream)
            self.transmit()
        elif isinstance(event, events.ConnectionTerminated):
            _terminated += 1


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("cert")
    parser.add_argument("key")
    parser.add_argument("--broken-group", action="store_true")
    parser.add_argument("--idle-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.broken_group:
        import broken_group_plugin

        broken_group_plugin.register()  # before configure(), which takes every group

    config = QuicConfiguration(
        is_client=False, alpn_protocols=[ALPN], idle_timeout=args.idle_timeout
    )
    config.load_cert_chain(args.cert, args.key)
    pq_quic_plugin.configure(config, "prefer")
    server = await serve("127.0.0.1", args.port, configuration=config, create_protocol=Echo)

    def status(*_: Any) -> None:
        table = len(set(server._protocols.values()))
        print(f"status table={table} terminated={_terminated}", flush=True)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, status)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main(sys.argv[1:]))
