"""A tunnel's credentials file, the key the edge keeps instead of the secret, and the proof.

The secret never leaves the connector's host. Both sides derive the same 32-byte *auth key* from
it with HKDF (:func:`derive_auth_key`); the edge's store keeps only that key. At registration the
edge sends a fresh nonce and the connector answers with an HMAC over the nonce and the
registration's identifiers (:func:`proof`), which the edge checks in constant time
(:func:`verify_proof`). Binding the tunnel, connector and connection index into the MAC stops a
proof from being replayed for another registration; the fresh nonce stops it being replayed at
all. Note that the auth key is enough to produce proofs, so the store is as sensitive as the
credentials file: both are written with mode 0600.

The file is JSON in cloudflared's spirit::

    {"TunnelID": "<uuid>", "TunnelName": "web", "TunnelSecret": "<base64>", "EdgeHints": [...]}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import stat
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "AUTH_INFO",
    "PROOF_LABEL",
    "SECRET_BYTES",
    "MIN_NONCE_BYTES",
    "Credentials",
    "CredentialsError",
    "derive_auth_key",
    "proof",
    "report_proof",
    "verify_proof",
    "verify_report_proof",
    "write_credentials",
    "load_credentials",
]

logger = logging.getLogger("pq_quic_plugin.tunnel")

AUTH_INFO = b"pq-tunnel auth v1"
PROOF_LABEL = b"pq-tunnel proof v1"
REPORT_LABEL = b"pq-tunnel report v1"
SECRET_BYTES = 32
MIN_NONCE_BYTES = 16
CREATE_HINT = "run `pq-tunnel create NAME --hostname HOST` to make a tunnel and its credentials"


class CredentialsError(ValueError):
    """A credentials file that is missing, unreadable or malformed; never contains the secret."""


def _tunnel_uuid(tunnel_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(tunnel_id))
    except ValueError:
        raise ValueError(f"tunnel ID {tunnel_id!r} is not a UUID") from None


def derive_auth_key(secret: bytes, tunnel_id: str) -> bytes:
    """HKDF-SHA256(secret, info = "pq-tunnel auth v1" || tunnel UUID bytes) → 32 bytes.

    Mixing in the tunnel ID means one secret accidentally reused for two tunnels still gives
    two unrelated keys.
    """
    if len(secret) < 16:
        raise ValueError("the tunnel secret is too short (need at least 16 bytes)")
    info = AUTH_INFO + _tunnel_uuid(tunnel_id).bytes
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _proof_message(
    nonce: bytes, tunnel_id: str, connector_id: str, conn_index: int, binding: bytes
) -> bytes:
    # The edge feeds these from the connector's JSON: wrong types must fail cleanly.
    if not isinstance(nonce, (bytes, bytearray)) or not isinstance(binding, (bytes, bytearray)):
        raise TypeError("nonce and binding must be bytes")
    if not isinstance(connector_id, str) or isinstance(conn_index, bool):
        raise TypeError("connector_id must be a string and conn_index an integer")
    if not isinstance(conn_index, int):
        raise TypeError("conn_index must be an integer")
    if len(nonce) < MIN_NONCE_BYTES:
        raise ValueError(f"the nonce must be at least {MIN_NONCE_BYTES} bytes")
    if not 0 <= conn_index < 2**32:
        raise ValueError("conn_index out of range")
    # Length-prefixing every field makes the encoding injective: no two different
    # (tunnel, connector, index) tuples can produce the same bytes.
    return b"".join(
        (
            _field(PROOF_LABEL),
            _field(bytes(nonce)),
            _field(_tunnel_uuid(tunnel_id).bytes),
            _field(connector_id.encode("utf-8")),
            _field(conn_index.to_bytes(4, "big")),
            _field(bytes(binding)),
        )
    )


def proof(
    auth_key: bytes,
    nonce: bytes,
    tunnel_id: str,
    connector_id: str,
    conn_index: int,
    *,
    binding: bytes = b"",
) -> bytes:
    """HMAC-SHA256(auth_key, length-prefixed label, nonce, tunnel, connector, index, binding).

    ``binding`` is optional channel-binding data both sides know (e.g. a TLS exporter value);
    pass the same bytes to :func:`verify_proof`.
    """
    msg = _proof_message(nonce, tunnel_id, connector_id, conn_index, binding)
    return hmac.new(auth_key, msg, hashlib.sha256).digest()


def verify_proof(
    auth_key: bytes,
    nonce: bytes,
    tunnel_id: str,
    connector_id: str,
    conn_index: int,
    presented: bytes,
    *,
    binding: bytes = b"",
) -> bool:
    """Constant-time check of a connector's proof; malformed inputs are simply ``False``."""
    try:
        expected = proof(auth_key, nonce, tunnel_id, connector_id, conn_index, binding=binding)
    except (ValueError, TypeError):
        return False
    return isinstance(presented, (bytes, bytearray)) and hmac.compare_digest(
        expected, bytes(presented)
    )


def _report_message(tunnel_id: str, timestamp: int, body: bytes) -> bytes:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise TypeError("timestamp must be a non-negative integer")
    return b"".join(
        (
            _field(REPORT_LABEL),
            _field(_tunnel_uuid(tunnel_id).bytes),
            _field(str(timestamp).encode("ascii")),
            _field(bytes(body)),
        )
    )


def report_proof(auth_key: bytes, tunnel_id: str, timestamp: int, body: bytes) -> bytes:
    """HMAC-SHA256 over a failure report's body, its tunnel and its time (Unix seconds), with a
    key of its own derived from the auth key (so a report proof can never stand in for a
    registration proof, nor the reverse).

    A connector whose post-quantum handshake failed holds the tunnel secret but has no
    tunnel connection to speak over; this lets the edge accept its report over plain HTTPS
    from anywhere, and refuse everyone else's.
    """
    key = hmac.new(auth_key, REPORT_LABEL, hashlib.sha256).digest()
    return hmac.new(key, _report_message(tunnel_id, timestamp, body), hashlib.sha256).digest()


def verify_report_proof(
    auth_key: bytes, tunnel_id: str, timestamp: int, body: bytes, presented: bytes
) -> bool:
    """Constant-time check of :func:`report_proof`; malformed inputs are simply ``False``."""
    try:
        expected = report_proof(auth_key, tunnel_id, timestamp, body)
    except (ValueError, TypeError):
        return False
    return isinstance(presented, (bytes, bytearray)) and hmac.compare_digest(
        expected, bytes(presented)
    )


@dataclass(frozen=True)
class Credentials:
    """The connector's side of a tunnel identity. ``secret`` is kept out of repr and str."""

    tunnel_id: str
    tunnel_name: str
    secret: bytes = field(repr=False)
    edge_hints: tuple[str, ...] = ()
    path: Path | None = field(default=None, compare=False)
    #: Problems worth telling the operator that do not stop the tunnel (e.g. file mode).
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def auth_key(self) -> bytes:
        return derive_auth_key(self.secret, self.tunnel_id)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "TunnelID": self.tunnel_id,
            "TunnelName": self.tunnel_name,
            "TunnelSecret": base64.b64encode(self.secret).decode("ascii"),
        }
        if self.edge_hints:
            data["EdgeHints"] = list(self.edge_hints)
        return data


def write_credentials(
    path: str | Path,
    tunnel_id: str,
    tunnel_name: str,
    secret: bytes,
    *,
    edge_hints: Sequence[str] = (),
    overwrite: bool = False,
) -> Credentials:
    """Write the credentials file with mode 0600 and return what was written.

    Without ``overwrite`` an existing file is an error (``FileExistsError``): silently replacing
    another tunnel's credentials would orphan that tunnel. The file is created with ``O_EXCL``
    (or written to a 0600 temporary file and renamed over the old one), so it is never readable
    by others, not even for a moment.
    """
    target = Path(path)
    creds = Credentials(
        str(_tunnel_uuid(tunnel_id)), tunnel_name, bytes(secret), tuple(edge_hints), target
    )
    payload = (json.dumps(creds.to_json(), indent=2) + "\n").encode("utf-8")
    if not target.parent.exists():
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if overwrite:
        fd, tmp = tempfile.mkstemp(prefix=".creds-", dir=target.parent)  # mode 0600
        try:
            _write_all(fd, payload)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    else:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise FileExistsError(
                f"credentials file {target} already exists; refusing to overwrite it "
                "(delete it or pass overwrite=True / --overwrite)"
            ) from None
        _write_all(fd, payload)
    return creds


def _write_all(fd: int, payload: bytes) -> None:
    try:
        os.fchmod(fd, 0o600)  # umask can only remove bits, but be exact
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        os.close(fd)


def load_credentials(path: str | Path) -> Credentials:
    """Read and check a credentials file; errors say what to fix, never the secret.

    A file readable by group or others still loads (the tunnel keeps running) but the warning
    is logged and kept in :attr:`Credentials.warnings`.
    """
    p = Path(path)
    try:
        st = p.stat()
        raw = p.read_bytes()
    except FileNotFoundError:
        raise CredentialsError(f"credentials file {p} does not exist; {CREATE_HINT}") from None
    except OSError as exc:
        raise CredentialsError(f"cannot read credentials file {p}: {exc.strerror}") from None
    warnings: list[str] = []
    if os.name == "posix" and st.st_mode & 0o077:
        mode = stat.S_IMODE(st.st_mode)
        warnings.append(
            f"credentials file {p} is readable by other users (mode {mode:04o}); "
            f"anyone who can read it can run this tunnel: chmod 600 {p}"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = (
            f" (line {exc.lineno} column {exc.colno}: {exc.msg})"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise CredentialsError(f"credentials file {p} is not valid JSON{where}") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"credentials file {p} must hold a JSON object")

    def need(key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            what = "is missing" if key not in data else "must be a non-empty string"
            raise CredentialsError(f"credentials file {p}: key {key!r} {what}")
        return value

    tunnel_id = need("TunnelID")
    try:
        tunnel_id = str(_tunnel_uuid(tunnel_id))
    except ValueError:
        raise CredentialsError(f"credentials file {p}: key 'TunnelID' is not a UUID") from None
    name = need("TunnelName")
    encoded = need("TunnelSecret")
    try:
        secret = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise CredentialsError(
            f"credentials file {p}: key 'TunnelSecret' is not valid base64"
        ) from None
    if len(secret) < 16:
        raise CredentialsError(
            f"credentials file {p}: key 'TunnelSecret' is too short ({len(secret)} bytes)"
        )
    hints = data.get("EdgeHints", [])
    if not isinstance(hints, list) or not all(isinstance(h, str) for h in hints):
        raise CredentialsError(f"credentials file {p}: key 'EdgeHints' must be a list of strings")
    unknown = sorted(set(data) - {"TunnelID", "TunnelName", "TunnelSecret", "EdgeHints"})
    if unknown:
        warnings.append(f"credentials file {p}: ignoring unknown key(s) {', '.join(unknown)}")
    for w in warnings:
        logger.warning("%s", w)
    return Credentials(tunnel_id, name, secret, tuple(hints), p, tuple(warnings))
