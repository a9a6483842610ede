"""An ``ssl.SSLObject`` look-alike backed by a pyOpenSSL ``Connection`` on memory BIOs.

asyncio, trio and anyio never touch a socket's TLS directly: they hand ``wrap_bio`` two
``ssl.MemoryBIO`` objects, move ciphertext between those and the network, and call the returned
object's ``do_handshake``/``read``/``write``/``unwrap``. Supplying that object is therefore the
whole integration: each call here moves whatever arrived in the stdlib ``incoming`` BIO into
pyOpenSSL's own BIO, runs the pyOpenSSL call, and moves what OpenSSL produced into ``outgoing``.
Errors leave as the ``ssl`` exceptions the loops expect (:mod:`.errors`).

Two deliberate differences from a straight translation:

* A fatal error on the server side during the handshake is reported only after its alert went
  out: the loops flush ``outgoing`` on ``SSLWantReadError`` but drop it on any other error, so
  a refused client (``require``) would see a bare EOF instead of a handshake_failure alert.
* After the handshake the negotiated group is logged the way the QUIC binding logs it, and under
  ``require`` a classical result (which OpenSSL's PQ-only list makes impossible) is refused.
"""

from __future__ import annotations

import logging
import ssl
import weakref
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from ..groups.base import Group
from ..policy import GroupPolicy, Policy
from . import native
from .errors import translate, want_read
from .groups import group_from_openssl
from .peercert import certificate_dict

if TYPE_CHECKING:
    from .context import PostQuantumSSLContext

logger = logging.getLogger("pq_quic_plugin.tls")

__all__ = ["PostQuantumSSLObject"]

#: The ServerHello random that marks a HelloRetryRequest (RFC 8446 section 4.1.3).
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
_HELLO_PREFIX = 43  # record header 5 + handshake header 4 + legacy_version 2 + random 32


class PostQuantumSSLObject:
    """What ``PostQuantumSSLContext.wrap_bio`` returns; the ``ssl.SSLObject`` interface.

    Extra: :meth:`group` (OpenSSL's name of the negotiated group, as Python 3.15's ``ssl`` will
    have it), :attr:`pq_group` (the registry's :class:`Group`) and :attr:`hello_retry`.
    """

    def __init__(
        self,
        context: PostQuantumSSLContext,
        connection: SSL.Connection,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        *,
        server_side: bool,
        server_hostname: str | None,
        policy: GroupPolicy,
    ) -> None:
        self._context = context
        self._conn = connection
        self._incoming = incoming
        self._outgoing = outgoing
        self._server_side = server_side
        self._hostname = server_hostname
        self._policy = policy
        self._established = False
        self._eof_fed = False
        self._closing = False  # close_notify sent or received: reads no longer just wait
        self._failure: ssl.SSLError | None = None
        self._output = native.OutputPipe(connection)
        self._server_hello = b""  # the first bytes of the server's first flight, to spot an HRR
        #: Whether the handshake went through a HelloRetryRequest (seen on the wire, both sides).
        self.hello_retry = False
        # A weak reference: a strong one would make a cycle, and every connection's OpenSSL
        # state would wait for the cyclic garbage collector instead of going with its object.
        connection.set_app_data(weakref.ref(self))

    # ------------------------------------------------------------------ moving bytes

    def _feed(self) -> None:
        incoming = self._incoming
        if incoming.pending:
            data = incoming.read()
            if not self._established and not self._server_side:
                self._watch_hello(data)
            native.feed(self._conn, data)
        if not self._eof_fed and incoming.eof:
            self._conn.bio_shutdown()  # from now on OpenSSL sees EOF, not "want read"
            self._eof_fed = True

    def _flush(self) -> None:
        if self._established or not self._server_side:
            self._output.move(self._outgoing)
            return
        data = native.take_output(self._conn)  # the server's first flight: watch for an HRR
        if data is not None:
            self._watch_hello(data[:_HELLO_PREFIX])
            self._outgoing.write(data)

    def _watch_hello(self, data: bytes) -> None:
        """Spot a HelloRetryRequest in the server's first record: costs a slice per handshake
        and needs no callback into Python from OpenSSL."""
        if len(self._server_hello) >= _HELLO_PREFIX:
            return
        self._server_hello += data[: _HELLO_PREFIX - len(self._server_hello)]
        hello = self._server_hello
        if len(hello) == _HELLO_PREFIX and hello[0] == 22 and hello[5] == 2:
            self.hello_retry = hello[11:43] == HRR_RANDOM

    def _run(self, operation: Any, *args: Any) -> Any:
        """One pyOpenSSL call between a feed and a flush, with errors translated."""
        if self._failure is not None:
            raise self._failure
        if native.error_pending():  # a stale error would turn "want read" into a failure
            native.clear_error_queue()
        incoming = self._incoming
        if incoming.pending or (not self._eof_fed and incoming.eof):
            self._feed()
        try:
            result = operation(*args)
        except SSL.Error as exc:
            raise self._failed(exc) from None
        finally:
            if self._established or not self._server_side:
                self._output.move(self._outgoing)
            else:
                self._flush()
        return result

    def _failed(self, error: SSL.Error) -> ssl.SSLError:
        """The exception to raise now; fatal ones are kept and raised again on any later call."""
        translated = translate(
            error,
            self._conn,
            policy=self._policy,
            server_side=self._server_side,
            in_handshake=not self._established,
            hostname=self._hostname,
        )
        if isinstance(translated, (ssl.SSLWantReadError, ssl.SSLWantWriteError)):
            return translated
        if isinstance(translated, ssl.SSLZeroReturnError):
            return translated
        self._failure = translated
        if self._server_side and not self._established and native.pending_output(self._conn):
            # Let the loop send the alert first: it flushes on "want read", then calls again.
            return want_read()
        return translated

    # ------------------------------------------------------------------ the SSLObject interface

    def do_handshake(self) -> None:
        self._run(self._conn.do_handshake)
        if not self._established:
            self._established = True
            self._handshake_done()

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        """Like ``SSLObject.read``: bytes, or a count with ``buffer``; ``b""``/0 once the peer
        closed cleanly (close_notify) while we have not."""
        if buffer is None and len <= 0:
            if len < 0:
                raise ValueError("size should not be negative")
            return b""
        if (
            self._established
            and not self._closing
            and self._failure is None
            and not self._incoming.pending
            and not self._incoming.eof
            and native.read_would_wait(self._conn)
        ):
            # Nothing new to decrypt: what OpenSSL would answer, without the round trip and
            # pyOpenSSL's exception (asyncio ends every burst of reads this way).
            raise want_read()
        try:
            if buffer is not None:
                data = self._run(native.read_into, self._conn, buffer, len)
            else:
                data = self._run(native.read_bytes, self._conn, len)
            self._established = True  # a read may have completed the handshake implicitly
            return data
        except ssl.SSLZeroReturnError:
            self._closing = True
            if self._conn.get_shutdown() == SSL.RECEIVED_SHUTDOWN:
                return 0 if buffer is not None else b""
            raise

    def write(self, data: Any) -> int:
        """Writes all of ``data`` (partial writes are off), returning its length."""
        if not len(memoryview(data)):
            return 0
        written: int = self._run(native.write_all, self._conn, data)
        self._established = True  # as for read
        return written

    def unwrap(self) -> None:
        """Send close_notify; ``SSLWantReadError`` until the peer's close_notify arrived."""

        def shutdown() -> None:
            if not self._conn.shutdown() and not self._conn.shutdown():
                raise SSL.WantReadError()

        self._closing = True
        self._run(shutdown)

    def pending(self) -> int:
        return int(self._conn.pending())

    def selected_alpn_protocol(self) -> str | None:
        protocol = self._conn.get_alpn_proto_negotiated()
        return protocol.decode("ascii") if protocol else None

    def selected_npn_protocol(self) -> None:
        return None  # NPN is gone from OpenSSL and from Python's ssl

    def getpeercert(self, binary_form: bool = False) -> Any:
        if not self._established:
            raise ValueError("handshake not done yet")
        cert = self._conn.get_peer_certificate(as_cryptography=True)
        if cert is None:
            return None
        if binary_form:
            return cert.public_bytes(Encoding.DER)
        if self._conn.get_verify_mode() == SSL.VERIFY_NONE:
            return {}  # as ssl: the dict is only for certificates that were verified
        return certificate_dict(cert)

    def get_verified_chain(self) -> list[bytes]:
        chain = self._conn.get_verified_chain(as_cryptography=True) or []
        return [cert.public_bytes(Encoding.DER) for cert in chain]

    def get_unverified_chain(self) -> list[bytes]:
        chain = self._conn.get_peer_cert_chain(as_cryptography=True) or []
        return [cert.public_bytes(Encoding.DER) for cert in chain]

    def cipher(self) -> tuple[str, str, int] | None:
        name = self._conn.get_cipher_name() if self._established else None
        if name is None:
            return None
        return name, self._conn.get_cipher_version() or "", self._conn.get_cipher_bits() or 0

    def shared_ciphers(self) -> None:
        """None, which ``ssl`` allows ("if no connection is established"): OpenSSL's list of
        the client's suites is not reachable through pyOpenSSL, and no event loop reads it."""
        return None

    def compression(self) -> None:
        return None  # always off (CRIME)

    def version(self) -> str | None:
        return self._conn.get_protocol_version_name() if self._established else None

    def group(self) -> str | None:
        """OpenSSL's name of the negotiated key-exchange group (``X25519MLKEM768``, ``x25519``),
        or None before the handshake."""
        return self._conn.get_group_name() if self._established else None

    @property
    def pq_group(self) -> Group | None:
        """The registry's :class:`Group` for :meth:`group`, as ``negotiated_group`` returns it."""
        return group_from_openssl(self.group())

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        """``tls-unique`` (RFC 5929) for TLS 1.2; None for TLS 1.3, which has no such value."""
        if cb_type not in ssl.CHANNEL_BINDING_TYPES:
            raise ValueError(f"Unsupported channel binding type {cb_type!r}")
        if not self._established or self.version() == "TLSv1.3":
            return None
        # The first Finished of the handshake: the client's in a full one, the server's in a
        # resumed one (as Python's ssl chooses).
        if self.session_reused != self._server_side:
            return self._conn.get_peer_finished()
        return self._conn.get_finished()

    def verify_client_post_handshake(self) -> None:
        raise ssl.SSLError("post-handshake client authentication is not supported over this layer")

    @property
    def context(self) -> PostQuantumSSLContext:
        return self._context

    @context.setter
    def context(self, value: PostQuantumSSLContext) -> None:
        """Switch contexts from an ``sni_callback`` (certificate per server name), as in ``ssl``."""
        build = getattr(value, "openssl_context", None)
        if build is None:
            raise TypeError("the context must be a post-quantum context from ssl_context()")
        self._conn.set_context(build())
        self._context = value

    @property
    def server_side(self) -> bool:
        return self._server_side

    @property
    def server_hostname(self) -> str | None:
        return self._hostname

    @property
    def session(self) -> None:
        """None: a client of this layer does not resume sessions (a server does resume its
        clients' sessions, see :attr:`session_reused`)."""
        return None

    @session.setter
    def session(self, value: Any) -> None:
        if value is not None:
            raise ValueError("client session resumption is not supported by the post-quantum layer")

    @property
    def session_reused(self) -> bool:
        return native.session_reused(self._conn) if self._established else False

    # ------------------------------------------------------------------ after the handshake

    def _handshake_done(self) -> None:
        """Log the result like the QUIC binding; refuse a classical result under ``require``."""
        group = self.pq_group
        name = group.name if group else (self.group() or "no group")
        side = "server" if self._server_side else "client"
        policy = self._policy.policy.value
        if group is not None and group.post_quantum:
            logger.info(
                "%s negotiated %s (0x%04X) over TCP, post-quantum%s [%s]",
                side,
                group.name,
                group.codepoint,
                " after HelloRetryRequest" if self.hello_retry else "",
                policy,
            )
            return
        if self._policy.policy is Policy.REQUIRE:
            self._failure = ssl.SSLError(
                f"{side} negotiated {name} over TCP, which is not post-quantum, under policy "
                "'require'; closing the connection"
            )
            raise self._failure
        logger.warning(
            "%s negotiated %s over TCP: NOT post-quantum; the peer offered no post-quantum group "
            "in common%s and policy '%s' allows classical key exchange",
            side,
            name,
            "" if self.version() == "TLSv1.3" else " (or no TLS 1.3)",
            policy,
        )

    def __repr__(self) -> str:
        side = "server" if self._server_side else "client"
        return f"<PostQuantumSSLObject {side} group={self.group()} version={self.version()}>"
