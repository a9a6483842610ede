"""Reading TLS handshake messages out of the bytes a QUIC stack writes to its CRYPTO streams.

QUIC carries TLS without records, so message sizes (a post-quantum key share makes the
ClientHello grow past one datagram) can only be had by splitting those bytes on the 4-byte
handshake headers; the wire benchmark's sizes and amplification tables are made of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
"""RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest."""
MESSAGE_NAMES = {
    1: "ClientHello",
    2: "ServerHello",
    4: "NewSessionTicket",
    8: "EncryptedExtensions",
    11: "Certificate",
    15: "CertificateVerify",
    20: "Finished",
}


@dataclass
class Sniffer:
    """Splits the TLS bytes one side writes into its CRYPTO streams into handshake messages."""

    messages: list[tuple[str, int]] = field(default_factory=list)  # (name, bytes incl. header)
    _buffers: dict[Any, bytes] = field(default_factory=dict)

    def feed(self, epoch: Any, data: bytes) -> None:
        buf = self._buffers.get(epoch, b"") + data
        while len(buf) >= 4:
            length = int.from_bytes(buf[1:4], "big")
            if len(buf) < 4 + length:
                break
            msg_type, body = buf[0], buf[4 : 4 + length]
            name = MESSAGE_NAMES.get(msg_type, f"type{msg_type}")
            if msg_type == 2 and body[2:34] == HRR_RANDOM:
                name = "HelloRetryRequest"
            self.messages.append((name, 4 + length))
            buf = buf[4 + length :]
        self._buffers[epoch] = buf

    def sizes(self, name: str) -> list[int]:
        return [size for n, size in self.messages if n == name]
