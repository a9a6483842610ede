"""The one key-exchange interface every group answers.

TLS 1.3 key exchange is modelled as a KEM, the way BoringSSL's ``SSLKeyShare`` and Go's
``crypto/tls`` do it: the client *generates* a key pair and sends the public half, the server
*encapsulates* against it and sends its reply, the client *decapsulates* the reply. ECDH fits the
shape (the server's reply is its own ephemeral public key), so the TLS engine never asks which kind
of group it holds.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


class InvalidKeyShare(ValueError):
    """A peer's key share is malformed: wrong length, not a curve point, bad ML-KEM key.

    The TLS binding turns this into an ``illegal_parameter`` alert, so the message is what the
    peer's operator will see in their logs; say what was wrong, never include secret material.
    """


@runtime_checkable
class Group(Protocol):
    """A TLS 1.3 key-exchange group, seen as a KEM.

    ``codepoint`` is the IANA TLS Supported Groups value and ``name`` the IANA name
    (``"X25519MLKEM768"``). ``post_quantum`` is true when the group stays secure against a
    quantum attacker (ML-KEM alone or a hybrid containing it).
    """

    codepoint: int
    name: str
    post_quantum: bool

    def generate(self) -> tuple[Any, bytes]:
        """Client side: return ``(private_state, key_share)``; the share goes in the ClientHello."""
        ...

    def encapsulate(self, peer_share: bytes) -> tuple[bytes, bytes]:
        """Server side: return ``(shared_secret, reply_share)`` for the client's ``peer_share``.

        Raises :class:`InvalidKeyShare` when ``peer_share`` is malformed.
        """
        ...

    def decapsulate(self, private_state: Any, reply_share: bytes) -> bytes:
        """Client side: return the shared secret from the server's ``reply_share``.

        Raises :class:`InvalidKeyShare` when ``reply_share`` is malformed.
        """
        ...
