"""The private names of aioquic and qh3 that the benchmarks peek at, all in this one module.

The benchmarks observe what the QUIC stacks expose no API for: which group stock aioquic or
qh3 settled on, the exact TLS bytes aioquic writes, and a qh3 client restricted to some groups
(qh3 has no option for it). The package itself reaches aioquic internals only through
``pq_quic_plugin.aioquic_binding``; these reads are the benchmarks' own, kept here so that a
release renaming one breaks this file and nothing else. They are hooks on one connection
object, never patches of the libraries' classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# qh3's server creates the private key object of the one group it selects (and no other), so
# which of these is set tells the negotiated group.
_QH3_SERVER_KEYS = {
    "_x25519_kyber_768_private_key": "X25519MLKEM768",
    "_x25519_private_key": "x25519",
    "_ec_p256_private_key": "secp256r1",
    "_ec_p384_private_key": "secp384r1",
}


def qh3_client_groups(groups: list[int]) -> Callable[[Any], None]:
    """A client hook that makes qh3 offer only ``groups`` (qh3 has no public option for it)."""

    def hook(connection: Any) -> None:
        original = connection._create_tls  # noqa: SLF001

        def create_tls(remote_source_cid: bytes | None) -> Any:
            bridge = original(remote_source_cid)
            bridge.tls._supported_groups = list(groups)  # noqa: SLF001
            return bridge

        connection._create_tls = create_tls  # noqa: SLF001

    return hook


def qh3_server_group(server: Any) -> str | None:
    """The group a qh3 server connection chose, from the key object it made."""
    names = [n for a, n in _QH3_SERVER_KEYS.items() if getattr(server.tls, a, None) is not None]
    return names[0] if len(names) == 1 else (",".join(names) or None)


def stock_aioquic_group(server: Any) -> str | None:
    """The group a stock aioquic server connection chose, from the private key it made."""
    tls = server.tls
    if getattr(tls, "_x25519_private_key", None) is not None:
        return "x25519"
    ec_keys = getattr(tls, "_ec_private_keys", None)
    if ec_keys:
        return str(ec_keys[0].curve.name)
    return None


def aioquic_crypto_writes(feed: Callable[[Any, bytes], None]) -> Callable[[Any], None]:
    """A connection hook that hands ``feed(epoch, data)`` what aioquic's TLS writes to CRYPTO.

    Read just before aioquic moves the bytes into its CRYPTO streams, so they are the TLS
    handshake messages exactly as sent, whatever the packetisation.
    """

    def hook(connection: Any) -> None:
        original = connection._push_crypto_data  # noqa: SLF001

        def push() -> None:
            for epoch, buf in connection._crypto_buffers.items():  # noqa: SLF001
                data = buf.data
                if data:
                    feed(epoch, data)
            original()

        connection._push_crypto_data = push  # noqa: SLF001

    return hook
