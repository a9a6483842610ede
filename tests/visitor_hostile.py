"""A hostile visitor, run as its own process so its work does not share the measuring
process's event loop: ``python visitor_hostile.py PORT CA_FILE SOURCE SECONDS``.

From the loopback address SOURCE it opens slow readers (downloads it never reads), a burst of
many concurrent slow requests over one HTTP/2 connection, then until SECONDS have passed keeps
sending a huge Host over HTTP/2, HEAD requests and requests with both Transfer-Encoding and
Content-Length. It prints one JSON object: how many answers of each status it got, and how many
requests failed without one (connections cut by the edge count there too).
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time

import httpx
from visitor_util import open_visitor, read_status, request_bytes, tls_context

SLOW_READERS = 40
BURST = 150


async def main(port: int, ca_file: str, source: str, seconds: float) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + seconds
    base = f"https://127.0.0.1:{port}"

    def client() -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(
            http2=True, verify=tls_context(ca_file), local_address=source
        )
        return httpx.AsyncClient(transport=transport, timeout=60)

    async def one(http: httpx.AsyncClient, method: str, path: str, host: str) -> None:
        try:
            response = await http.request(method, base + path, headers={"host": host})
            counts[str(response.status_code)] += 1
        except httpx.HTTPError:
            counts["error"] += 1

    # The burst has a connection of its own: its streams would otherwise queue the rest.
    async with client() as streams, client() as other:
        # HEAD first, while it still has its share: answered with a length and no body, HEAD
        # used to make the connector drop its whole HTTP/3 connection to the origin.
        heads = [one(other, "HEAD", f"/bytes/{1 << 20}", "localhost") for _ in range(20)]
        await asyncio.gather(*heads)
        held = []
        for _ in range(SLOW_READERS):
            reader, writer = await open_visitor(port, ca_file, source)
            writer.write(request_bytes("GET", f"/bytes/{1 << 29}"))
            held.append((reader, writer))
        burst = [
            asyncio.ensure_future(one(streams, "GET", "/slow?seconds=30", "localhost"))
            for _ in range(BURST)
        ]
        await asyncio.sleep(1)
        huge = "a." * 15_000 + "localhost"
        while time.monotonic() < deadline:
            await one(other, "GET", "/", huge)
            await one(other, "HEAD", f"/bytes/{1 << 20}", "localhost")
            await te_and_cl(port, ca_file, source, counts)
            await asyncio.sleep(0.2)
        for task in burst:
            task.cancel()
        await asyncio.gather(*burst, return_exceptions=True)
        for _, writer in held:
            writer.close()
    return dict(counts)


async def te_and_cl(port: int, ca_file: str, source: str, counts: collections.Counter) -> None:
    reader, writer = await open_visitor(port, ca_file, source)
    writer.write(
        request_bytes(
            "POST",
            "/echo",
            [("Transfer-Encoding", "chunked"), ("Content-Length", "3"), ("Connection", "close")],
            b"5\r\nhello\r\n0\r\n\r\n",
        )
    )
    try:
        counts[str(await asyncio.wait_for(read_status(reader), 10))] += 1
    except (OSError, ValueError, IndexError, asyncio.TimeoutError):
        counts["error"] += 1
    writer.close()


if __name__ == "__main__":
    port_text, ca, address, duration = sys.argv[1:5]
    print(json.dumps(asyncio.run(main(int(port_text), ca, address, float(duration)))))
