"""qh3 on the wire: group names and codes, the hello sniffer, and group restriction.

How the negotiated group is learned: qh3 exposes NO public attribute or event for it
(``HandshakeCompleted`` has only ``alpn_protocol``, ``early_data_accepted`` and
``session_resumed``; ``tls.Context`` keeps the ServerHello's group in no attribute). So
:func:`instrument` tees the raw TLS bytes of the Initial epoch's CRYPTO stream (the ClientHello
and ServerHello exactly as sent or received) and parses them with the small parser below, which
shares no code with qh3. It hooks the private ``QuicConnection._create_tls`` and the bridge's
``receive_crypto``/``next_crypto_data`` (qh3 2.x); if qh3 renames them the hook fails loudly.

How groups are restricted: qh3 has no public option either. A client's offer is
``tls.Context._supported_groups`` (set by :func:`instrument`); a server ignores its own list and
takes the first client key share it implements, with no HelloRetryRequest, so the child server
filters parsed ClientHello key shares (a process-wide patch, hence the child process).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qh3 import tls as qh3_tls
from qh3.quic.connection import QuicConnection

ECHO_ALPN = "pq-test"
"""Raw QUIC ALPN: the server echoes each stream's data back and closes the stream."""
#: qh3 assumes 333 ms before its first RTT sample, so a handshake that fails waits out a 2 s
#: closing period; loopback answers in microseconds (tests/quic_util.py does the same for aioquic).
INITIAL_RTT = 0.01

GROUP_CODES = {
    "secp256r1": 0x0017,
    "secp384r1": 0x0018,
    "secp521r1": 0x0019,
    "x25519": 0x001D,
    "MLKEM512": 0x0200,
    "MLKEM768": 0x0201,
    "MLKEM1024": 0x0202,
    "X25519Kyber768Draft00": 0x6399,
    "SecP256r1MLKEM768": 0x11EB,
    "X25519MLKEM768": 0x11EC,
    "SecP384r1MLKEM1024": 0x11ED,
}
"""IANA TLS group names (as the project spells them) and code points."""
_GROUP_NAMES = {code: name for name, code in GROUP_CODES.items()}
# Groups qh3 2.x implements; anything else in a restriction would make it offer nothing.
_QH3_GROUPS = {"X25519MLKEM768", "x25519", "secp256r1", "secp384r1", "secp521r1"}
_HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")


def group_name(code: int) -> str:
    """IANA name of a group code point; GREASE (RFC 8701) and unknown values stay visible."""
    if code & 0x0F0F == 0x0A0A and code >> 8 == code & 0xFF:
        return f"GREASE(0x{code:04X})"
    return _GROUP_NAMES.get(code, f"0x{code:04X}")


def group_codes(names: Sequence[str]) -> list[int]:
    """Code points for ``names``; refuses what qh3 cannot do instead of failing mid-handshake."""
    unknown = [n for n in names if n not in _QH3_GROUPS]
    if unknown or not names:
        raise ValueError(f"qh3 implements only {sorted(_QH3_GROUPS)}, got {list(names)}")
    return [GROUP_CODES[n] for n in names]


# --- wire observation ----------------------------------------------------------------------


@dataclass
class HelloRecord:
    """What one connection's ClientHello and ServerHello said on the wire (last ones seen)."""

    offered_key_shares: list[str] = field(default_factory=list)
    supported_groups: list[str] = field(default_factory=list)
    selected_group: str | None = None
    """The ServerHello's key_share group: the group that was negotiated."""
    hello_retry: bool = False


def _u16(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 2], "big")


def _parse_hello(msg_type: int, body: bytes, record: HelloRecord) -> None:
    """Fill ``record`` from a ClientHello (1) or ServerHello (2) body (RFC 8446 section 4.1)."""
    pos = 34 + 1 + body[34]  # legacy_version, random, legacy_session_id
    if msg_type == 1:
        pos += 2 + _u16(body, pos)  # cipher_suites
        pos += 1 + body[pos]  # legacy_compression_methods
    else:
        pos += 3  # cipher_suite, legacy_compression_method
    end = pos + 2 + _u16(body, pos)
    pos += 2
    while pos + 4 <= end:
        ext_type, ext_len = _u16(body, pos), _u16(body, pos + 2)
        ext = body[pos + 4 : pos + 4 + ext_len]
        pos += 4 + ext_len
        if msg_type == 1 and ext_type == 10:  # supported_groups
            record.supported_groups = [group_name(_u16(ext, i)) for i in range(2, len(ext), 2)]
        elif msg_type == 1 and ext_type == 51:  # key_share: list of (group, key_exchange)
            shares, i = [], 2
            while i + 4 <= len(ext):
                shares.append(group_name(_u16(ext, i)))
                i += 4 + _u16(ext, i + 2)
            record.offered_key_shares = shares
        elif msg_type == 2 and ext_type == 51:  # key_share: one entry, or a group in an HRR
            if body[2:34] == _HRR_RANDOM:
                record.hello_retry = True
            else:
                record.selected_group = group_name(_u16(ext, 0))


class _HelloSniffer:
    """Reassembles one direction's Initial CRYPTO stream into TLS handshake messages."""

    def __init__(self, record: HelloRecord) -> None:
        self._record = record
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 4:
            length = int.from_bytes(self._buffer[1:4], "big")
            if len(self._buffer) < 4 + length:
                return
            msg_type, body = self._buffer[0], self._buffer[4 : 4 + length]
            self._buffer = self._buffer[4 + length :]
            if msg_type in (1, 2):
                _parse_hello(msg_type, body, self._record)


def instrument(quic: QuicConnection, groups: Sequence[str] | None = None) -> HelloRecord:
    """Observe the hellos of ``quic`` (and, for a client, offer only ``groups``, in order).

    Call before the first datagram (a client: before ``connect``; a server: in the protocol's
    constructor). The returned record fills in as the handshake runs.
    """
    record = HelloRecord()
    codes = group_codes(groups) if groups is not None else None
    original = quic._create_tls

    def create_tls(remote_source_cid: bytes | None) -> Any:
        bridge = original(remote_source_cid)  # also re-run after Retry / version negotiation
        if codes is not None and quic.configuration.is_client:
            bridge.tls._supported_groups = list(codes)
        inbound, outbound = _HelloSniffer(record), _HelloSniffer(record)
        receive, next_data = bridge.receive_crypto, bridge.next_crypto_data

        def receive_crypto(epoch: qh3_tls.Epoch, data: bytes, *args: Any, **kw: Any) -> None:
            if epoch == qh3_tls.Epoch.INITIAL:
                inbound.feed(data)
            receive(epoch, data, *args, **kw)

        def next_crypto_data() -> Any:
            crypto = next_data()
            if crypto is not None and crypto.epoch == qh3_tls.Epoch.INITIAL:
                outbound.feed(crypto.data)
            return crypto

        bridge.receive_crypto = receive_crypto  # type: ignore[method-assign]
        bridge.next_crypto_data = next_crypto_data  # type: ignore[method-assign]
        return bridge

    quic._create_tls = create_tls  # type: ignore[method-assign]
    return record


def restrict_server_key_shares(names: Sequence[str]) -> None:
    """Make this process's qh3 servers pick only among ``names`` (process-wide patch).

    qh3's server takes the first ClientHello key share it implements and never sends a
    HelloRetryRequest, so a client without a share for an allowed group gets handshake_failure.
    The transcript hash uses the raw bytes, so filtering the parsed list is safe.
    """
    allowed = set(group_codes(names))
    original = qh3_tls.pull_client_hello

    def pull_client_hello(buf: Any) -> Any:
        hello = original(buf)
        if hello.key_share is not None:
            hello.key_share = [share for share in hello.key_share if share[0] in allowed]
        return hello

    qh3_tls.pull_client_hello = pull_client_hello
