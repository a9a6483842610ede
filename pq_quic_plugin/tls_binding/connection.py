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
from typing import TYPE_CHECKING, Any, NamedTuple

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from ..auth_policy import CLIENT_REFUSAL_HINT, AuthPolicy, SignatureScheme
from ..groups.base import Group
from ..policy import GroupPolicy, Policy
from . import auth as tls_auth
from . import native
from .errors import auth_refused, translate, want_read
from .groups import group_from_openssl
from .peercert import certificate_dict

if TYPE_CHECKING:
    from .context import PostQuantumSSLContext

logger = logging.getLogger("pq_quic_plugin.tls")

__all__ = ["PostQuantumSSLObject"]

#: The ServerHello random that marks a HelloRetryRequest (RFC 8446 section 4.1.3).
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
_HELLO_PREFIX = 43  # record header 5 + handshake header 4 + legacy_version 2 + random 32


class _Facts(NamedTuple):
    group: str | None
    pq_group: Group | None
    cipher: tuple[str, str, int] | None
    version: str | None


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
        auth: AuthPolicy = AuthPolicy.PREFER,
    ) -> None:
        self._context = context
        self._conn = connection
        self._incoming = incoming
        self._outgoing = outgoing
        self._server_side = server_side
        self._hostname = server_hostname
        self._policy = policy
        self._established = False
        self._closing = False  # close_notify sent or received: reads no longer just wait
        self._failure: ssl.SSLError | None = None
        #: Handshake done, no close_notify either way, no failure: reads (unless the incoming
        #: BIO is at EOF) and writes take :class:`native.Wire`'s short path; every other state
        #: goes through :meth:`_run`.
        self._open = False
        self._wire = native.Wire(connection, incoming, outgoing)
        self._server_hello = b""  # the first bytes of the server's first flight, to spot an HRR
        self._facts: _Facts | None = None
        self._auth_policy = auth
        self._auth: tls_auth.AuthFacts | None = None
        #: Whether the handshake went through a HelloRetryRequest (seen on the wire, both sides).
        self.hello_retry = False
        # A weak reference: a strong one would make a cycle, and every connection's OpenSSL
        # state would wait for the cyclic garbage collector instead of going with its object.
        connection.set_app_data(weakref.ref(self))

    # ------------------------------------------------------------------ moving bytes

    def _feed(self) -> None:
        data = self._wire.feed()
        if data and not self._established and not self._server_side:
            self._watch_hello(data)

    def _flush(self) -> None:
        if self._established or not self._server_side:
            self._wire.drain()
            return
        data = self._wire.take()  # the server's first flight: watch for an HRR
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

    def _prepare(self) -> None:
        """Before any OpenSSL call: the kept failure, a stale error queue, what arrived."""
        if self._failure is not None:
            raise self._failure
        if native.error_pending():  # a stale error would turn "want read" into a failure
            native.clear_error_queue()
        incoming = self._incoming
        if incoming.pending or (incoming.eof and not self._wire.eof_fed):
            self._feed()

    def _run(self, operation: Any, *args: Any) -> Any:
        """One pyOpenSSL call between a feed and a flush, with errors translated: every call
        outside the established, open state (:attr:`_open`), where :class:`native.Wire`'s
        short path does the same in one frame."""
        self._prepare()
        try:
            result = operation(*args)
        except SSL.Error as exc:
            raise self._failed(exc) from None
        finally:
            self._flush()
        return result

    def _failed(self, error: SSL.Error) -> ssl.SSLError:
        """The exception to raise now; fatal ones are kept and raised again on any later call.
        Called before the output moves, so that a server can see its own alert pending."""
        translated = translate(
            error,
            self._conn,
            policy=self._policy,
            server_side=self._server_side,
            in_handshake=not self._established,
            hostname=self._hostname,
            auth=self._auth_policy,
        )
        if isinstance(translated, (ssl.SSLWantReadError, ssl.SSLWantWriteError)):
            return translated
        if isinstance(translated, ssl.SSLZeroReturnError):
            self._open = False
            return translated
        self._failure = translated
        self._open = False
        if self._server_side and not self._established and self._wire.pending():
            # Let the loop send the alert first: it flushes on "want read", then calls again.
            return want_read()
        return translated

    # ------------------------------------------------------------------ the SSLObject interface

    def do_handshake(self) -> None:
        if self._run(self._wire.handshake) is None:
            raise want_read()
        if not self._established:
            self._established = True
            self._handshake_done()
            self._open = not (self._closing or self._failure)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        """Like ``SSLObject.read``: bytes, or a count with ``buffer``; ``b""``/0 once the peer
        closed cleanly (close_notify) while we have not."""
        if self._open and not self._incoming.eof:
            if buffer is None and len <= 0:
                return self._read_nothing(len)
            try:
                data = self._wire.read(len, buffer)
            except SSL.Error as exc:
                return self._read_failed(exc, buffer)
            if data is None:
                raise want_read()
            return data
        if buffer is None and len <= 0:
            return self._read_nothing(len)
        try:
            data = self._run(self._wire.decrypt, len, buffer)
        except ssl.SSLZeroReturnError as exc:
            return self._closed_cleanly(buffer, exc)
        if data is None:
            raise want_read()
        self._established = True  # a read may have completed the handshake implicitly
        return data

    @staticmethod
    def _read_nothing(len: int) -> bytes:
        if len < 0:
            raise ValueError("size should not be negative")
        return b""

    def _read_failed(self, error: SSL.Error, buffer: Any) -> Any:
        translated = self._failed(error)
        self._wire.drain()
        if isinstance(translated, ssl.SSLZeroReturnError):
            return self._closed_cleanly(buffer, translated)
        raise translated from None

    def _closed_cleanly(self, buffer: Any, error: ssl.SSLZeroReturnError) -> Any:
        """The peer's close_notify: end of data (``b""``/0) unless we closed too."""
        self._closing = True
        self._open = False
        if self._conn.get_shutdown() == SSL.RECEIVED_SHUTDOWN:
            return 0 if buffer is not None else b""
        raise error from None

    def write(self, data: Any) -> int:
        """Writes all of ``data`` (partial writes are off), returning its length."""
        if self._open:
            try:
                written = self._wire.write(data)
            except SSL.Error as exc:
                failure = self._failed(exc)
                self._wire.drain()
                raise failure from None
            if written is None:
                raise want_read()
            return written
        if not len(memoryview(data)):
            return 0
        written = self._run(self._wire.write, data)
        if written is None:
            raise want_read()
        self._established = True  # as for read
        return int(written)

    def unwrap(self) -> None:
        """Send close_notify; ``SSLWantReadError`` until the peer's close_notify arrived."""

        def shutdown() -> None:
            if not self._conn.shutdown() and not self._conn.shutdown():
                raise SSL.WantReadError()

        self._closing = True
        self._open = False
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
        return self._negotiated().cipher if self._established else None

    def shared_ciphers(self) -> None:
        """None, which ``ssl`` allows ("if no connection is established"): OpenSSL's list of
        the client's suites is not reachable through pyOpenSSL, and no event loop reads it."""
        return None

    def compression(self) -> None:
        return None  # always off (CRIME)

    def version(self) -> str | None:
        return self._negotiated().version if self._established else None

    def group(self) -> str | None:
        """OpenSSL's name of the negotiated key-exchange group (``X25519MLKEM768``, ``x25519``),
        or None before the handshake."""
        return self._negotiated().group if self._established else None

    @property
    def pq_group(self) -> Group | None:
        """The registry's :class:`Group` for :meth:`group`, as ``negotiated_group`` returns it."""
        return self._negotiated().pq_group if self._established else None

    def _negotiated(self) -> _Facts:
        """What the handshake agreed on, read from OpenSSL once: it cannot change afterwards
        (no renegotiation), and the event loop, the log line and hypercorn-pq's scope each
        ask for it on every connection."""
        facts = self._facts
        if facts is None:
            conn = self._conn
            name = conn.get_group_name()
            suite = conn.get_cipher_name()
            cipher = (
                (suite, conn.get_cipher_version() or "", conn.get_cipher_bits() or 0)
                if suite
                else None
            )
            version = conn.get_protocol_version_name()
            facts = self._facts = _Facts(name, group_from_openssl(name), cipher, version)
        return facts

    def signature_scheme(self) -> SignatureScheme | None:
        """The server's CertificateVerify scheme (``ML-DSA-65``, ``ECDSA-P256-SHA256``), on
        either side; None before the handshake, for a resumed session, and where OpenSSL's
        choice cannot be read (an RSA key's hash, TLS 1.2): see :mod:`.auth`."""
        return self._auth_facts().scheme if self._established else None

    @property
    def pq_signature_scheme(self) -> SignatureScheme | None:
        return self.signature_scheme()

    @property
    def pq_post_quantum_auth(self) -> bool:
        """ML-DSA CertificateVerify and an all-ML-DSA chain (verified, on a client)."""
        return self._auth_facts().post_quantum if self._established else False

    @property
    def server_certificate_pem(self) -> str | None:
        """On a server, the leaf this handshake presented (of the context's pairs), as PEM."""
        if not self._server_side or not self._established:
            return None
        return self._auth_facts().leaf_pem

    def _auth_facts(self) -> tls_auth.AuthFacts:
        facts = self._auth
        if facts is None:
            if native.session_reused(self._conn):
                facts = tls_auth.NO_AUTH  # a resumed TLS 1.3 session sends no certificate
            elif self._server_side:
                facts = tls_auth.server_side_facts(self._conn, self.version() == "TLSv1.3")
            else:
                facts = tls_auth.client_side_facts(self._conn, self.version() == "TLSv1.3")
            self._auth = facts
        return facts

    def _check_auth(self) -> None:
        """Log how the server authenticated; a ``require`` client refuses a classical one."""
        if not self._server_side and self._auth_policy is AuthPolicy.REQUIRE:
            reason = tls_auth.client_refusal_reason(self._conn, self._auth_facts())
            if reason is not None:
                logger.error("refusing server: %s. %s", reason, CLIENT_REFUSAL_HINT)
                self._failure = auth_refused(reason)
                raise self._failure
        if logger.isEnabledFor(logging.INFO):
            facts = self._auth_facts()
            logger.info(
                "%s: authentication with %s over TCP, %s [%s]",
                "server" if self._server_side else "client",
                facts.scheme.name if facts.scheme else "an unreported scheme",
                "post-quantum" if facts.post_quantum else "NOT post-quantum",
                self._auth_policy.value,
            )

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
        """Log the result like the QUIC binding; refuse a classical result under ``require``
        (key exchange, then authentication)."""
        self._check_group()
        self._check_auth()

    def _check_group(self) -> None:
        group = self.pq_group
        name = group.name if group else (self.group() or "no group")
        side = "server" if self._server_side else "client"
        policy = self._policy.policy.value
        if group is not None and group.post_quantum:
            if logger.isEnabledFor(logging.INFO):
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
        version = self.version() or ""
        self._context.classical_notices.log(
            (side, name, version),
            "%s negotiated %s over TCP: NOT post-quantum; the peer offered no post-quantum group "
            "in common%s and policy '%s' allows classical key exchange",
            side,
            name,
            "" if version == "TLSv1.3" else " (or no TLS 1.3)",
            policy,
        )

    def __repr__(self) -> str:
        side = "server" if self._server_side else "client"
        return f"<PostQuantumSSLObject {side} group={self.group()} version={self.version()}>"
