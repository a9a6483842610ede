"""The tunnel store, the credentials file and the registration proof, on real files.

No mocks: a real SQLite file shared with real subprocesses, real file modes, and a grep through
the database's bytes for the secret that must not be there.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pq_quic_plugin.tunnel.credentials import (
    Credentials,
    CredentialsError,
    derive_auth_key,
    load_credentials,
    proof,
    verify_proof,
    write_credentials,
)
from pq_quic_plugin.tunnel.edge.store import (
    TunnelConflictError,
    TunnelNotFoundError,
    TunnelRecord,
    TunnelStore,
)

ROOT = Path(__file__).resolve().parents[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TunnelStore]:
    with TunnelStore(tmp_path / "edge" / "tunnels.db") as s:
        yield s


# --------------------------------------------------------------------------- the store


def test_create_get_list(store: TunnelStore) -> None:
    rec, secret = store.create("web", ["App.Example.com", "*.apps.example.com", "app.example.com"])
    assert isinstance(rec, TunnelRecord)
    assert uuid.UUID(rec.id).version == 4
    assert rec.name == "web" and len(secret) == 32
    assert rec.hostnames == ("*.apps.example.com", "app.example.com")  # normalized, no repeats
    assert rec.auth_key == derive_auth_key(secret, rec.id)
    assert rec.created_at.tzinfo is not None
    assert store.get("web") == rec
    assert store.get(rec.id) == rec
    assert store.get(rec.id.upper()) == rec
    assert store.get("nope") is None
    other, _ = store.create("api")
    assert [t.name for t in store.list()] == ["web", "api"]
    assert other.hostnames == ()


def test_repr_hides_the_auth_key(store: TunnelStore) -> None:
    rec, secret = store.create("web", ["a.example.com"])
    text = repr(rec) + str(rec)
    assert "auth_key" not in text and rec.auth_key.hex() not in text
    assert repr(rec.auth_key) not in text


def test_by_hostname_exact_then_wildcard(store: TunnelStore) -> None:
    wild, _ = store.create("wild", ["*.example.com"])
    deep, _ = store.create("deep", ["*.b.example.com"])
    exact, _ = store.create("exact", ["a.b.example.com"])
    assert store.by_hostname("a.b.example.com") == exact
    assert store.by_hostname("A.B.Example.COM:8443") == exact  # case and port ignored
    assert store.by_hostname("x.b.example.com") == deep  # the most specific wildcard
    assert store.by_hostname("x.y.b.example.com") == deep  # one or more labels
    assert store.by_hostname("x.example.com") == wild
    assert store.by_hostname("example.com") is None  # a wildcard needs at least one label
    assert store.by_hostname("example.org") is None
    assert store.by_hostname("") is None


def test_duplicate_name_refused(store: TunnelStore) -> None:
    first, _ = store.create("web", ["a.example.com"])
    with pytest.raises(
        TunnelConflictError, match=f"a tunnel named 'web' already exists .{first.id}"
    ):
        store.create("web", ["b.example.com"])
    assert store.by_hostname("b.example.com") is None  # nothing half-written
    assert len(store.list()) == 1


def test_hostname_owned_by_another_tunnel(store: TunnelStore) -> None:
    owner, _ = store.create("web", ["a.example.com"])
    with pytest.raises(TunnelConflictError) as info:
        store.create("thief", ["b.example.com", "A.example.com"])
    assert "'a.example.com' already belongs to tunnel 'web'" in str(info.value)
    assert owner.id in str(info.value)
    assert store.get("thief") is None and store.by_hostname("b.example.com") is None
    api, _ = store.create("api")
    with pytest.raises(TunnelConflictError, match="belongs to tunnel 'web'"):
        store.add_hostname("api", "a.example.com")
    assert store.by_hostname("a.example.com") == owner


def test_add_remove_delete(store: TunnelStore) -> None:
    rec, _ = store.create("web", ["a.example.com"])
    rec2 = store.add_hostname("web", "b.example.com")
    assert rec2.hostnames == ("a.example.com", "b.example.com")
    assert store.add_hostname(rec.id, "b.example.com") == rec2  # idempotent for the owner
    assert store.remove_hostname("web", "a.example.com").hostnames == ("b.example.com",)
    gone = store.delete("web")
    assert gone.id == rec.id and store.get(rec.id) is None
    assert store.by_hostname("b.example.com") is None  # hostnames go with the tunnel
    store.create("web2", ["b.example.com"])  # and are free again
    with pytest.raises(
        TunnelNotFoundError, match="no tunnel with ID or name 'web'; known tunnels: web2"
    ):
        store.delete("web")
    with pytest.raises(TunnelNotFoundError):
        store.add_hostname("missing", "c.example.com")


@pytest.mark.parametrize("name", ["", "-x", "has space", "a" * 65, str(uuid.uuid4())])
def test_bad_names_refused(store: TunnelStore, name: str) -> None:
    with pytest.raises(ValueError, match="not a valid tunnel name"):
        store.create(name)


def test_bad_hostname_refused(store: TunnelStore) -> None:
    with pytest.raises(ValueError, match="not a valid host name"):
        store.create("web", ["a..example.com"])
    assert store.get("web") is None


def test_db_mode_0600_and_secret_not_stored(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a permissive umask must not matter
    try:
        path = tmp_path / "tunnels.db"
        with TunnelStore(path) as store:
            secrets_made = [store.create(f"t{i}", [f"h{i}.example.com"])[1] for i in range(5)]
            files = [p for p in tmp_path.iterdir() if p.name.startswith("tunnels.db")]
            assert {p.name for p in files} >= {"tunnels.db", "tunnels.db-wal"}  # WAL mode
            for p in files:
                assert mode(p) == 0o600, p
            blob = b"".join(p.read_bytes() for p in files)
        blob += path.read_bytes()  # after the checkpoint on close, too
        for secret in secrets_made:
            assert secret not in blob
            assert base64.b64encode(secret) not in blob
            assert secret.hex().encode() not in blob
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- two processes

WRITER = textwrap.dedent(
    """
    import sys
    from pq_quic_plugin.tunnel.edge.store import TunnelStore
    path, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with TunnelStore(path) as store:
        for i in range(count):
            store.create(f"{prefix}{i}", [f"{prefix}{i}.example.com"])
    print("done")
    """
)


def spawn_writer(db: Path, prefix: str, count: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), prefix, str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_reader_sees_another_process_creating(tmp_path: Path) -> None:
    db = tmp_path / "tunnels.db"
    count = 40
    with TunnelStore(db) as reader:  # the "edge": open before the writer starts
        writer = spawn_writer(db, "w", count)
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while len(seen) < count and time.monotonic() < deadline:
            records = reader.list()  # never a half-written tunnel: each has its hostname
            for rec in records:
                assert rec.hostnames == (f"{rec.name}.example.com",)
            seen = {r.name for r in records}
            found = reader.by_hostname(f"w{len(seen) - 1}.example.com") if seen else None
            assert found is None or found.name == f"w{len(seen) - 1}"
        out, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err
        assert len(reader.list()) == count
        assert reader.by_hostname(f"w{count - 1}.example.com") is not None


def test_two_writers_at_once(tmp_path: Path) -> None:
    db = tmp_path / "tunnels.db"
    writers = [spawn_writer(db, prefix, 30) for prefix in ("a", "b")]
    for w in writers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
    with TunnelStore(db) as store:
        names = {t.name for t in store.list()}
    assert names == {f"{p}{i}" for p in "ab" for i in range(30)}
    assert mode(db) == 0o600


# --------------------------------------------------------------------------- credentials


def test_credentials_round_trip_and_mode(tmp_path: Path, store: TunnelStore) -> None:
    rec, secret = store.create("web", ["a.example.com"])
    path = tmp_path / "creds" / f"{rec.id}.json"
    old = os.umask(0o022)
    try:
        written = write_credentials(path, rec.id, rec.name, secret, edge_hints=["127.0.0.1:7844"])
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    data = json.loads(path.read_text())
    assert set(data) == {"TunnelID", "TunnelName", "TunnelSecret", "EdgeHints"}
    assert base64.b64decode(data["TunnelSecret"]) == secret
    creds = load_credentials(path)
    assert creds == written and creds.warnings == ()
    assert creds.tunnel_id == rec.id and creds.edge_hints == ("127.0.0.1:7844",)
    assert creds.auth_key == rec.auth_key  # the connector derives what the edge stored
    for text in (repr(creds), str(creds)):
        assert data["TunnelSecret"] not in text and repr(secret) not in text


def test_credentials_refuse_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    tid = str(uuid.uuid4())
    write_credentials(path, tid, "a", b"\x01" * 32)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_credentials(path, tid, "b", b"\x02" * 32)
    assert load_credentials(path).tunnel_name == "a"
    os.chmod(path, 0o644)
    write_credentials(path, tid, "b", b"\x02" * 32, overwrite=True)
    assert load_credentials(path).tunnel_name == "b" and mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]  # no temporary left behind


def test_credentials_errors(tmp_path: Path) -> None:
    with pytest.raises(
        CredentialsError, match=r"does not exist; run `pq-tunnel create NAME --hostname HOST`"
    ):
        load_credentials(tmp_path / "missing.json")

    def bad(text: str) -> str:
        p = tmp_path / "bad.json"
        p.write_text(text)
        os.chmod(p, 0o600)
        with pytest.raises(CredentialsError) as info:
            load_credentials(p)
        return str(info.value)

    tid = str(uuid.uuid4())
    good_secret = base64.b64encode(b"s" * 32).decode()
    assert "not valid JSON (line 1 column" in bad("{")
    assert "must hold a JSON object" in bad("[]")
    assert "key 'TunnelSecret' is missing" in bad(json.dumps({"TunnelID": tid, "TunnelName": "x"}))
    assert "key 'TunnelID' is not a UUID" in bad(
        json.dumps({"TunnelID": "web", "TunnelName": "x", "TunnelSecret": good_secret})
    )
    leaked = "not!base64!" + "A" * 40
    msg = bad(json.dumps({"TunnelID": tid, "TunnelName": "x", "TunnelSecret": leaked}))
    assert "key 'TunnelSecret' is not valid base64" in msg and leaked not in msg
    assert "'EdgeHints' must be a list" in bad(
        json.dumps(
            {"TunnelID": tid, "TunnelName": "x", "TunnelSecret": good_secret, "EdgeHints": 5}
        )
    )


def test_world_readable_credentials_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.json"
    secret = b"\x07" * 32
    write_credentials(path, str(uuid.uuid4()), "web", secret)
    os.chmod(path, 0o644)
    with caplog.at_level("WARNING", logger="pq_quic_plugin.tunnel"):
        creds = load_credentials(path)
    assert len(creds.warnings) == 1 and "mode 0644" in creds.warnings[0]
    assert "chmod 600" in creds.warnings[0]
    assert creds.warnings[0] in caplog.text
    assert base64.b64encode(secret).decode() not in caplog.text


# --------------------------------------------------------------------------- the proof


def test_proof_and_verify() -> None:
    tid = str(uuid.uuid4())
    secret = os.urandom(32)
    key = derive_auth_key(secret, tid)
    nonce = os.urandom(32)
    p = proof(key, nonce, tid, "connector-1", 2)
    assert len(p) == 32
    assert verify_proof(key, nonce, tid, "connector-1", 2, p)
    # every bound input matters
    assert not verify_proof(key, os.urandom(32), tid, "connector-1", 2, p)
    assert not verify_proof(key, nonce, str(uuid.uuid4()), "connector-1", 2, p)
    assert not verify_proof(key, nonce, tid, "connector-2", 2, p)
    assert not verify_proof(key, nonce, tid, "connector-1", 3, p)
    assert not verify_proof(key, nonce, tid, "connector-1", 2, p, binding=b"tls")
    assert not verify_proof(key, nonce, tid, "connector-1", 2, p[:-1])
    assert not verify_proof(key, nonce, tid, "connector-1", 2, "not bytes")  # type: ignore[arg-type]
    # garbage from a connector's JSON is a clean False, not an exception
    assert not verify_proof(key, nonce, tid, 7, 2, p)  # type: ignore[arg-type]
    assert not verify_proof(key, nonce, tid, "connector-1", "2", p)  # type: ignore[arg-type]
    assert not verify_proof(key, nonce, tid, "connector-1", -1, p)
    assert not verify_proof(key, nonce, tid, "connector-1", 2**40, p)
    assert not verify_proof(key, nonce, "not-a-uuid", "connector-1", 2, p)
    # a wrong secret gives a different key and a proof that fails
    wrong = proof(derive_auth_key(os.urandom(32), tid), nonce, tid, "connector-1", 2)
    assert not verify_proof(key, nonce, tid, "connector-1", 2, wrong)
    # the same secret under another tunnel ID is another key
    assert derive_auth_key(secret, str(uuid.uuid4())) != key
    # short nonces are refused on the proving side and simply fail verification
    with pytest.raises(ValueError, match="nonce"):
        proof(key, b"short", tid, "c", 0)
    assert not verify_proof(key, b"short", tid, "c", 0, p)


def test_proof_with_store_and_credentials(tmp_path: Path, store: TunnelStore) -> None:
    """The full flow: create → credentials file → connector proves → edge verifies from the DB."""
    rec, secret = store.create("web", ["a.example.com"])
    write_credentials(tmp_path / "c.json", rec.id, rec.name, secret)
    creds = load_credentials(tmp_path / "c.json")
    nonce = os.urandom(32)
    presented = proof(creds.auth_key, nonce, creds.tunnel_id, "conn-x", 0)
    edge_view = store.get(creds.tunnel_id)
    assert edge_view is not None
    assert verify_proof(edge_view.auth_key, nonce, edge_view.id, "conn-x", 0, presented)
    impostor = Credentials(rec.id, "web", os.urandom(32))
    forged = proof(impostor.auth_key, nonce, rec.id, "conn-x", 0)
    assert not verify_proof(edge_view.auth_key, nonce, rec.id, "conn-x", 0, forged)
