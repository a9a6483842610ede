"""ClientHellos built byte by byte, and the QUIC Initial datagrams that carry them.

The fuzz test (``tests/test_fuzz_clienthello.py``) needs ClientHellos no TLS stack would send:
an extension twice, a list length that lies, a key share one byte short. aioquic's
``push_client_hello`` always writes the same extensions in the same order, so the hello is
encoded here from a list of ``(type, body)`` extensions, remembering where every length field
is (for :mod:`fuzz_clienthello_mutations` to corrupt). The Initial packets around it are
aioquic's own packet builder and Initial keys, so whatever is mutated reaches the server's TLS
code: the QUIC header, the encryption and the CRYPTO framing are always valid.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field, replace

from aioquic.buffer import Buffer
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicFrameType,
    QuicPacketType,
    QuicProtocolVersion,
    QuicTransportParameters,
    push_quic_transport_parameters,
)
from aioquic.quic.packet_builder import QuicPacketBuilder

from pq_quic_plugin.plugins import registry

# Extension types (RFC 8446 4.2, RFC 9001 8.2).
SERVER_NAME = 0
SUPPORTED_GROUPS = 10
SIGNATURE_ALGORITHMS = 13
ALPN = 16
SUPPORTED_VERSIONS = 43
PSK_KEY_EXCHANGE_MODES = 45
KEY_SHARE = 51
QUIC_TRANSPORT_PARAMETERS = 0x39

TLS13 = 0x0304
AES_128_GCM_SHA256 = 0x1301
AES_256_GCM_SHA384 = 0x1302
CHACHA20_POLY1305_SHA256 = 0x1303
#: What a browser offers; the dev PKI's key is ECDSA P-256, so the first one is the one used.
SIGNATURE_ALGORITHMS_OFFERED = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
#: Initial packets of a client must fill a 1200-byte datagram (RFC 9000 14.1).
DATAGRAM_SIZE = 1200


def u8(value: int) -> bytes:
    return struct.pack("!B", value & 0xFF)


def u16(value: int) -> bytes:
    return struct.pack("!H", value & 0xFFFF)


def u24(value: int) -> bytes:
    return struct.pack("!I", value & 0xFFFFFF)[1:]


def opaque8(data: bytes) -> bytes:
    return u8(len(data)) + data


def opaque16(data: bytes) -> bytes:
    return u16(len(data)) + data


def u16_list(values: list[int]) -> bytes:
    """A ``uint16 list<2..2^16-2>``: supported_groups, signature_algorithms, cipher suites."""
    return opaque16(b"".join(u16(v) for v in values))


def key_share_body(shares: list[tuple[int, bytes]]) -> bytes:
    return opaque16(b"".join(u16(cp) + opaque16(share) for cp, share in shares))


def alpn_body(protocols: list[str]) -> bytes:
    return opaque16(b"".join(opaque8(p.encode()) for p in protocols))


def server_name_body(name: bytes) -> bytes:
    return opaque16(u8(0) + opaque16(name))


def transport_parameters_body(scid: bytes) -> bytes:
    """The client's QUIC transport parameters; the initial_source_connection_id must be the SCID
    of the Initial packets (RFC 9000 7.3)."""
    buf = Buffer(capacity=512)
    push_quic_transport_parameters(
        buf,
        QuicTransportParameters(
            initial_source_connection_id=scid,
            max_idle_timeout=5000,
            initial_max_data=1 << 20,
            initial_max_stream_data_bidi_local=1 << 18,
            initial_max_stream_data_bidi_remote=1 << 18,
            initial_max_stream_data_uni=1 << 18,
            initial_max_streams_bidi=16,
            initial_max_streams_uni=16,
            active_connection_id_limit=4,
        ),
    )
    return buf.data


def key_share_for(codepoint: int) -> bytes:
    """A real key share (fresh key pair) for a registered group."""
    group = registry().by_codepoint(codepoint)
    assert group is not None, f"no registered group 0x{codepoint:04X}"
    return group.generate()[1]


def unknown_groups(count: int) -> list[int]:
    """``count`` group codepoints no server here accepts: none registered, none GREASE."""
    known = {g.codepoint for g in registry()}
    out: list[int] = []
    cp = 0x2000
    while len(out) < count:
        if cp not in known and (cp & 0x0F0F) != 0x0A0A:
            out.append(cp)
        cp += 1
    return out


@dataclass
class Hello:
    """A ClientHello as its parts; :meth:`encode` gives the handshake message."""

    extensions: list[tuple[int, bytes]]
    random: bytes = field(default_factory=lambda: os.urandom(32))
    session_id: bytes = b""
    cipher_suites: bytes = field(
        default_factory=lambda: u16_list(
            [AES_128_GCM_SHA256, AES_256_GCM_SHA384, CHACHA20_POLY1305_SHA256]
        )
    )
    compression: bytes = b"\x01\x00"

    def with_extension(self, ext_type: int, body: bytes) -> Hello:
        """The same hello with ``ext_type``'s body replaced (added at the end if absent)."""
        exts = list(self.extensions)
        for i, (t, _) in enumerate(exts):
            if t == ext_type:
                exts[i] = (t, body)
                break
        else:
            exts.append((ext_type, body))
        return replace(self, extensions=exts)

    def encode(self) -> tuple[bytes, list[tuple[int, int]]]:
        """The handshake message, and where its length fields are: ``(offset, size)``."""
        lengths: list[tuple[int, int]] = []
        body = bytearray(u16(0x0303) + self.random)
        lengths.append((4 + len(body), 1))
        body += opaque8(self.session_id)
        lengths.append((4 + len(body), 2))
        body += self.cipher_suites
        lengths.append((4 + len(body), 1))
        body += self.compression
        lengths.append((4 + len(body), 2))
        ext_start = len(body) + 2
        exts = bytearray()
        for ext_type, ext_body in self.extensions:
            lengths.append((4 + ext_start + len(exts) + 2, 2))
            # The body's own leading list length, for the extensions that have one.
            if len(ext_body) >= 2 and ext_type not in (SUPPORTED_VERSIONS, PSK_KEY_EXCHANGE_MODES):
                lengths.append((4 + ext_start + len(exts) + 4, 2))
            exts += u16(ext_type) + opaque16(ext_body)
        body += opaque16(bytes(exts))
        lengths.insert(0, (1, 3))
        return b"\x01" + u24(len(body)) + bytes(body), lengths


def baseline(
    scid: bytes,
    alpn: str,
    groups: list[int],
    shares: list[int],
    server_name: str = "localhost",
) -> Hello:
    """A well-formed ClientHello the servers under test accept (given their ALPN)."""
    return Hello(
        extensions=[
            (SERVER_NAME, server_name_body(server_name.encode())),
            (SUPPORTED_GROUPS, u16_list(groups)),
            (SIGNATURE_ALGORITHMS, u16_list(SIGNATURE_ALGORITHMS_OFFERED)),
            (SUPPORTED_VERSIONS, opaque8(u16(TLS13))),
            (PSK_KEY_EXCHANGE_MODES, opaque8(b"\x01")),
            (KEY_SHARE, key_share_body([(cp, key_share_for(cp)) for cp in shares])),
            (ALPN, alpn_body([alpn])),
            (QUIC_TRANSPORT_PARAMETERS, transport_parameters_body(scid)),
        ]
    )


def initial_datagrams(dcid: bytes, scid: bytes, crypto_data: bytes) -> list[bytes]:
    """``crypto_data`` in CRYPTO frames of client Initial packets, one padded datagram each."""
    crypto = CryptoPair()
    crypto.setup_initial(cid=dcid, is_client=True, version=QuicProtocolVersion.VERSION_1)
    datagrams: list[bytes] = []
    offset = 0
    packet_number = 0
    while offset < len(crypto_data) or not datagrams:
        builder = QuicPacketBuilder(
            host_cid=scid,
            peer_cid=dcid,
            version=QuicProtocolVersion.VERSION_1,
            is_client=True,
            max_datagram_size=DATAGRAM_SIZE,
            packet_number=packet_number,
        )
        builder.start_packet(QuicPacketType.INITIAL, crypto)
        # frame type + offset + length (each a varint of at most 4 bytes here)
        room = builder.remaining_buffer_space - 1 - 4 - 2
        chunk = crypto_data[offset : offset + room]
        buf = builder.start_frame(QuicFrameType.CRYPTO, capacity=1 + 4 + 2 + len(chunk))
        buf.push_uint_var(offset)
        buf.push_uint_var(len(chunk))
        buf.push_bytes(chunk)
        padding = builder.remaining_buffer_space
        if padding > 0:
            buf.push_bytes(bytes(padding))  # PADDING frames
        out, _ = builder.flush()
        datagrams.extend(out)
        offset += len(chunk)
        packet_number += 1
    return datagrams


def fresh_cids() -> tuple[bytes, bytes]:
    """A new (destination, source) connection ID pair: every case is a new connection."""
    return os.urandom(8), os.urandom(8)
