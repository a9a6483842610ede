"""HelloRetryRequest on the wire, which aioquic neither sends nor parses.

An HRR is a ServerHello with a fixed "random" (RFC 8446 4.1.3) whose key_share extension carries
only the selected group; aioquic's ``pull_server_hello`` would read that as a truncated key share
and fail with decode_error, so the binding recognises and parses it here first.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from aioquic import tls
from aioquic.buffer import Buffer, BufferReadError
from cryptography.hazmat.primitives import hashes

#: SHA-256("HelloRetryRequest"), RFC 8446 section 4.1.3.
HELLO_RETRY_REQUEST_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()

# Offset of ``random`` in a handshake message: type (1) + length (3) + legacy_version (2).
_RANDOM_OFFSET = 6


class AlertUnsupportedExtension(tls.Alert):
    description = tls.AlertDescription.unsupported_extension


def is_hello_retry_request(message: bytes) -> bool:
    """True for a ServerHello message that is really a HelloRetryRequest."""
    return (
        message[_RANDOM_OFFSET : _RANDOM_OFFSET + 32] == HELLO_RETRY_REQUEST_RANDOM
        and message[0] == tls.HandshakeType.SERVER_HELLO
    )


@dataclass
class HelloRetryRequest:
    legacy_session_id: bytes
    cipher_suite: int
    selected_group: int
    supported_version: int | None = None
    cookie: bytes | None = None
    other_extensions: list[tuple[int, bytes]] = field(default_factory=list)


def push_hello_retry_request(buf: Buffer, hrr: HelloRetryRequest) -> None:
    extensions: list[tuple[int, bytes]] = [
        (tls.ExtensionType.KEY_SHARE, hrr.selected_group.to_bytes(2, "big"))
    ]
    if hrr.cookie is not None:
        extensions.append(
            (tls.ExtensionType.COOKIE, len(hrr.cookie).to_bytes(2, "big") + hrr.cookie)
        )
    tls.push_server_hello(
        buf,
        tls.ServerHello(
            random=HELLO_RETRY_REQUEST_RANDOM,
            legacy_session_id=hrr.legacy_session_id,
            cipher_suite=hrr.cipher_suite,
            compression_method=tls.CompressionMethod.NULL,
            supported_version=hrr.supported_version,
            other_extensions=extensions,
        ),
    )


def pull_hello_retry_request(buf: Buffer) -> HelloRetryRequest:
    """Parse an HRR; malformed input raises ``AlertDecodeError`` like aioquic's own parsers."""
    try:
        return _pull(buf)
    except BufferReadError:
        raise tls.AlertDecodeError("Could not parse HelloRetryRequest") from None


def _pull(buf: Buffer) -> HelloRetryRequest:
    if buf.pull_uint8() != tls.HandshakeType.SERVER_HELLO:
        raise tls.AlertUnexpectedMessage("expected a HelloRetryRequest")
    length = int.from_bytes(buf.pull_bytes(3), "big")
    end = buf.tell() + length
    if buf.pull_uint16() != tls.TLS_VERSION_1_2:
        raise tls.AlertDecodeError("HelloRetryRequest version is not 1.2")
    buf.pull_bytes(32)
    session_id = buf.pull_bytes(buf.pull_uint8())
    cipher_suite = buf.pull_uint16()
    if buf.pull_uint8() != tls.CompressionMethod.NULL:
        raise tls.AlertIllegalParameter("HelloRetryRequest has a compression method")
    ext_length = buf.pull_uint16()
    ext_end = buf.tell() + ext_length
    hrr = HelloRetryRequest(
        legacy_session_id=session_id, cipher_suite=cipher_suite, selected_group=-1
    )
    seen: set[int] = set()
    while buf.tell() < ext_end:
        ext_type = buf.pull_uint16()
        data = buf.pull_bytes(buf.pull_uint16())
        if ext_type in seen:
            raise tls.AlertIllegalParameter("HelloRetryRequest repeats an extension")
        seen.add(ext_type)
        if ext_type == tls.ExtensionType.KEY_SHARE:
            if len(data) != 2:
                raise tls.AlertDecodeError("HelloRetryRequest key_share is not one group")
            hrr.selected_group = int.from_bytes(data, "big")
        elif ext_type == tls.ExtensionType.SUPPORTED_VERSIONS:
            if len(data) != 2:
                raise tls.AlertDecodeError("HelloRetryRequest supported_versions is malformed")
            hrr.supported_version = int.from_bytes(data, "big")
        elif ext_type == tls.ExtensionType.COOKIE:
            if len(data) < 3 or int.from_bytes(data[:2], "big") != len(data) - 2:
                raise tls.AlertDecodeError("HelloRetryRequest cookie is malformed")
            hrr.cookie = data[2:]
        else:
            hrr.other_extensions.append((ext_type, data))
    if buf.tell() != ext_end or buf.tell() != end or not buf.eof():
        raise tls.AlertDecodeError("HelloRetryRequest has trailing bytes")
    return hrr


def message_hash(client_hello: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
    """The synthetic ``message_hash`` handshake message that replaces ClientHello1 in the
    transcript after an HRR (RFC 8446 section 4.4.1)."""
    h = hashes.Hash(algorithm)
    h.update(client_hello)
    digest = h.finalize()
    return bytes([254, 0, 0, len(digest)]) + digest
