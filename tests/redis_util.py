"""Real ``redis-server`` processes on loopback for the cluster tests (Debian's package).

Each server runs on a port the test chose, from a temporary directory, with no persistence
(``--save '' --appendonly no``) unless asked to keep it over a restart (``persistent``: an
append-only file), so a plain restart is a Redis that lost everything. Servers are stopped
by PID, never by name.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tools.processes import Process, free_port, start, stop

__all__ = ["RedisServer", "needs_redis", "redis_server"]

#: Skip a module when Debian's redis-server is not installed (.ci/run installs it).
needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server (apt-get install redis-server)"
)


class RedisServer:
    """One ``redis-server`` on 127.0.0.1:``port``; :meth:`restart` keeps the port."""

    def __init__(
        self, directory: Path, password: str | None = None, persistent: bool = False
    ) -> None:
        self.dir = directory.absolute()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.password = password
        #: Keep the data over a restart (an append-only file, synced at every write).
        self.persistent = persistent
        self.port = free_port()
        self.process: Process | None = None
        self._starts = 0

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def start(self, timeout: float = 10.0) -> None:
        cmd = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "always",
            "--dir", str(self.dir),
        ]  # fmt: skip
        if self.password:
            cmd += ["--requirepass", self.password]
        self._starts += 1
        self.process = start(cmd, self.dir / f"redis-{self._starts}.log", cwd=self.dir)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.RedisError, OSError):
                if self.client().ping():
                    return
            if self.process.exited() or time.monotonic() > deadline:
                log = self.process.log_tail()
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process.proc)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def dump(self) -> list[tuple[bytes, bytes]]:
        """Every key and its value (as ``DUMP`` would not: readable), for secret scans."""
        client = self.client()
        out: list[tuple[bytes, bytes]] = []
        for key in client.scan_iter(count=1000):
            kind = client.type(key)
            if kind == b"string":
                values = [client.get(key) or b""]
            elif kind == b"hash":
                values = [b for kv in client.hgetall(key).items() for b in kv]
            elif kind == b"set":
                values = list(client.smembers(key))
            elif kind == b"zset":
                values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == b"list":
                values = list(client.lrange(key, 0, -1))
            else:
                values = []
            out.extend((key, v) for v in values)
        return out


@contextlib.contextmanager
def redis_server(
    directory: Path, password: str | None = None, persistent: bool = False
) -> Iterator[RedisServer]:
    server = RedisServer(directory, password, persistent)
    server.start()
    try:
        yield server
    finally:
        server.stop()
