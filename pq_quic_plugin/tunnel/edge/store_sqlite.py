"""The embedded tunnel store (the default): a SQLite file shared by ``pq-tunnel create`` and one
edge.

Why SQLite: the edge process reads it on every registration and routing decision while
``pq-tunnel create`` writes it from another process; SQLite's WAL mode gives readers a consistent
snapshot without blocking the writer and makes a new tunnel visible to the running edge without a
reload. Writers take ``BEGIN IMMEDIATE`` so two concurrent creates serialize instead of failing
half-way, and uniqueness (names, hostnames) is enforced by the schema as well as checked first
for a readable error.

Only the HKDF-derived auth key is stored, never the tunnel secret (see ``credentials.py``). The
auth key still suffices to authenticate as the tunnel, so the database file (and SQLite's
``-wal``/``-shm`` files, which inherit its mode) is created 0600 and a directory we create for
it 0700, whatever the umask. A store found readable by others (say 0644, from a copy or an
older release) is tightened to 0600 with a warning that its keys may have been read, rather
than refused: the edge keeps serving, and the warning says what to do; one we cannot tighten
(another user's file) is refused.

The edge also keeps connectors' post-quantum failure reports here (``pq_reports``, the newest
:data:`REPORTS_KEPT`), so an edge restart does not lose the evidence of a broken network.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .. import strict_json
from . import store_records as records
from .store_records import REPORTS_KEPT, StoreError, TunnelRecord

__all__ = ["TunnelStore"]

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tunnels (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    auth_key   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS hostnames (
    hostname  TEXT PRIMARY KEY,
    tunnel_id TEXT NOT NULL REFERENCES tunnels(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS hostnames_by_tunnel ON hostnames(tunnel_id);
CREATE TABLE IF NOT EXISTS pq_reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    report      TEXT NOT NULL
);
"""


class TunnelStore:
    """Tunnels, their hostnames and auth keys in one SQLite file (WAL mode, mode 0600).

    One connection per store object, guarded by a lock, so it can be shared by threads; every
    process opens its own store. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | Path, *, timeout: float = 10.0) -> None:
        self.path = Path(path)
        _private_directory(self.path.parent)
        # Create the file ourselves so it never exists with a wider mode than 0600.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _tighten(fd, self.path)
        finally:
            os.close(fd)
        for suffix in ("-wal", "-shm"):  # SQLite gives these the main file's mode, when new
            _tighten_if_exists(Path(f"{self.path}{suffix}"))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._enable_wal(timeout)
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._write() as db:  # not executescript(): it would COMMIT our transaction
            for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                db.execute(stmt)

    # -- plumbing ---------------------------------------------------------------------------

    def _enable_wal(self, timeout: float) -> None:
        """Switch a new file to WAL, waiting out another process doing the same.

        The switch takes an exclusive lock, and SQLite reports "database is locked" at once
        instead of calling its busy handler when two processes open a fresh store together
        (``create`` next to a starting edge). Retry until ``timeout``, as for any other lock.
        """
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def describe(self) -> str:
        """What logs and errors call this store."""
        return str(self.path)

    # -- what the running edge needs besides lookups (``store.EdgeStore``) ------------------

    async def start(self) -> None:
        """Nothing to connect: the file was opened (and made private) by the constructor."""

    async def fresh_by_id(self, tunnel_id: str) -> TunnelRecord | None:
        """:meth:`by_id`: every read sees the file as it is now."""
        return self.by_id(tunnel_id)

    async def next_change(self, timeout: float) -> None:
        """SQLite tells no one about a change: wait ``timeout`` and let the caller look (the
        edge polls the file that often)."""
        await asyncio.sleep(timeout)

    async def aclose(self) -> None:
        """Nothing: the edge never closed its file, and the status page may still read it
        while the edge stops; the process's exit closes it."""

    def __enter__(self) -> TunnelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")  # one snapshot for the few SELECTs of a lookup
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    @staticmethod
    def _record(db: sqlite3.Connection, row: tuple[str, str, float, bytes]) -> TunnelRecord:
        tid, name, created, key = row
        hosts = tuple(
            h
            for (h,) in db.execute(
                "SELECT hostname FROM hostnames WHERE tunnel_id = ? ORDER BY hostname", (tid,)
            )
        )
        when = datetime.fromtimestamp(created, tz=timezone.utc)
        return TunnelRecord(tid, name, hosts, when, bytes(key))

    @staticmethod
    def _find_row(db: sqlite3.Connection, id_or_name: str) -> tuple[str, str, float, bytes] | None:
        cols = "SELECT id, name, created_at, auth_key FROM tunnels"
        row: tuple[str, str, float, bytes] | None
        tid = records.canonical_id(id_or_name)
        if tid is None:
            row = db.execute(f"{cols} WHERE name = ?", (id_or_name,)).fetchone()
        else:
            row = db.execute(f"{cols} WHERE id = ?", (tid,)).fetchone()
        return row

    def _require(self, db: sqlite3.Connection, id_or_name: str) -> tuple[str, str, float, bytes]:
        row = self._find_row(db, id_or_name)
        if row is None:
            raise records.not_found(
                id_or_name, (n for (n,) in db.execute("SELECT name FROM tunnels"))
            )
        return row

    @staticmethod
    def _claim(db: sqlite3.Connection, tunnel_id: str, hostname: str) -> None:
        owner = db.execute(
            "SELECT t.id, t.name FROM hostnames h JOIN tunnels t ON t.id = h.tunnel_id "
            "WHERE h.hostname = ?",
            (hostname,),
        ).fetchone()
        if owner is not None:
            if owner[0] == tunnel_id:
                return
            raise records.hostname_conflict(hostname, owner[0], owner[1])
        db.execute(
            "INSERT INTO hostnames (hostname, tunnel_id) VALUES (?, ?)", (hostname, tunnel_id)
        )

    # -- public API ---------------------------------------------------------------------------

    def create(self, name: str, hostnames: Iterable[str] = ()) -> tuple[TunnelRecord, bytes]:
        """Make a tunnel: a UUID4 ID and a fresh 32-byte secret, returned once and not stored.

        Raises :class:`~.store_records.TunnelConflictError` if the name or a hostname is taken, and
        ``ValueError`` for an invalid name or hostname; nothing is written in either case.
        """
        new = records.new_tunnel(name, hostnames)
        with self._write() as db:
            other = db.execute("SELECT id FROM tunnels WHERE name = ?", (name,)).fetchone()
            if other is not None:
                raise records.name_conflict(name, other[0])
            db.execute(
                "INSERT INTO tunnels (id, name, created_at, auth_key) VALUES (?, ?, ?, ?)",
                (new.id, name, time.time(), new.auth_key),
            )
            for host in new.hostnames:
                self._claim(db, new.id, host)
            record = self._record(db, self._require(db, new.id))
        return record, new.secret

    def by_id(self, tunnel_id: str) -> TunnelRecord | None:
        """The tunnel with this UUID (any case), or ``None``; never looks names up, so what a
        connector sends as its tunnel ID cannot be a name (nor probe for one)."""
        tid = records.canonical_id(tunnel_id)
        if tid is None:
            return None
        with self._read() as db:
            row = db.execute(
                "SELECT id, name, created_at, auth_key FROM tunnels WHERE id = ?", (tid,)
            ).fetchone()
            return None if row is None else self._record(db, row)

    def get(self, id_or_name: str) -> TunnelRecord | None:
        """The tunnel with this UUID (any case) or exact name, or ``None``."""
        with self._read() as db:
            row = self._find_row(db, id_or_name)
            return None if row is None else self._record(db, row)

    def require(self, id_or_name: str) -> TunnelRecord:
        """The tunnel with this UUID or name; :class:`TunnelNotFoundError` names the tunnels
        there are, for an operator who mistyped."""
        with self._read() as db:
            return self._record(db, self._require(db, id_or_name))

    def by_hostname(self, host: str) -> TunnelRecord | None:
        """The tunnel serving a request's host: an exact hostname first, then the most specific
        wildcard (``*.b.example.com`` before ``*.example.com``). Case and ``:port`` are ignored.
        """
        candidates = records.host_candidates(host)
        if not candidates:
            return None
        marks = ",".join("?" * len(candidates))
        with self._read() as db:
            found = dict(
                db.execute(
                    f"SELECT hostname, tunnel_id FROM hostnames WHERE hostname IN ({marks})",
                    candidates,
                ).fetchall()
            )
            for cand in candidates:
                if cand in found:
                    return self._record(db, self._require(db, found[cand]))
        return None

    def list(self) -> list[TunnelRecord]:
        """Every tunnel, oldest first."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id, name, created_at, auth_key FROM tunnels ORDER BY created_at, name"
            ).fetchall()
            return [self._record(db, row) for row in rows]

    def add_report(self, report: dict[str, object], keep: int = REPORTS_KEPT) -> None:
        """Keep one post-quantum failure report (finite JSON only); the oldest beyond ``keep``
        go."""
        text = strict_json.dumps(report, separators=(",", ":"))
        with self._write() as db:
            db.execute(
                "INSERT INTO pq_reports (received_at, report) VALUES (?, ?)", (time.time(), text)
            )
            db.execute(
                "DELETE FROM pq_reports WHERE id <= (SELECT MAX(id) FROM pq_reports) - ?",
                (keep,),
            )

    def reports(self, count: int = REPORTS_KEPT) -> builtins.list[dict[str, object]]:
        """The newest ``count`` reports, newest first."""
        with self._read() as db:
            rows = db.execute(
                "SELECT report FROM pq_reports ORDER BY id DESC LIMIT ?", (max(0, count),)
            ).fetchall()
        return [json.loads(text) for (text,) in rows]

    def delete(self, id_or_name: str) -> TunnelRecord:
        """Remove a tunnel and its hostnames; returns what was removed."""
        with self._write() as db:
            record = self._record(db, self._require(db, id_or_name))
            db.execute("DELETE FROM tunnels WHERE id = ?", (record.id,))
        return record

    def add_hostname(self, id_or_name: str, hostname: str) -> TunnelRecord:
        """Route one more hostname (maybe ``*.domain``) to a tunnel; idempotent for its owner."""
        (host,) = records.normalize_all([hostname])
        with self._write() as db:
            row = self._require(db, id_or_name)
            self._claim(db, row[0], host)
            return self._record(db, row)

    def remove_hostname(self, id_or_name: str, hostname: str) -> TunnelRecord:
        """Stop routing a hostname to a tunnel (no error if it was not routed there)."""
        (host,) = records.normalize_all([hostname])
        with self._write() as db:
            row = self._require(db, id_or_name)
            db.execute("DELETE FROM hostnames WHERE hostname = ? AND tunnel_id = ?", (host, row[0]))
            return self._record(db, row)


def _private_directory(directory: Path) -> None:
    """Create ``directory`` (and missing parents) 0700, whatever the umask; an existing one is
    left as it is (it may be shared, e.g. ``/var/lib``)."""
    missing: list[Path] = []
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for new in reversed(missing):
        try:
            new.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process made it first
        os.chmod(new, 0o700)  # the umask can only remove bits; be exact anyway


def _tighten(fd: int, path: Path) -> None:
    """Make the open store file 0600: say so if it was readable by others, refuse if we
    cannot change it."""
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if not mode & 0o077:
        return
    try:
        os.fchmod(fd, 0o600)
    except OSError as exc:
        raise StoreError(
            f"tunnel store {path} is readable by other users (mode {mode:04o}) and cannot be "
            f"made private ({exc.strerror}); its keys let anyone act as its tunnels: "
            f"chmod 600 {path} as its owner"
        ) from None
    logger.warning(
        "tunnel store %s was readable by other users (mode %04o); changed it to 0600. Its "
        "keys let anyone who read it act as its tunnels: if others could read it, re-create "
        "those tunnels (pq-tunnel delete, then create)",
        path,
        mode,
    )


def _tighten_if_exists(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        _tighten(fd, path)
    finally:
        os.close(fd)
