"""Every call into OpenSSL that pyOpenSSL has no public API for, in one small module.

Each function here uses private names of pyOpenSSL (``Context._context``, ``Connection._ssl``,
``Connection._from_ssl``, ``Connection._reverse_mapping``) or C symbols of ``cryptography``'s
binding (``OpenSSL._util.lib``); all of them are listed in :data:`.version.REQUIRED_INTERNALS` and
checked at import. Keeping them here means the rest of the layer uses pyOpenSSL's public API only,
and a pyOpenSSL that grows ``Context.set_groups`` (pyca/pyopenssl#1477) changes one function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from OpenSSL._util import ffi, lib

logger = logging.getLogger("pq_quic_plugin.tls")

#: Arrays that OpenSSL fills at once need no zeroing first (pyOpenSSL allocates the same way).
_uncleared = ffi.new_allocator(should_clear_after_alloc=False)

__all__ = [
    "accepts_groups",
    "clear_error_queue",
    "clear_partial_write",
    "error_pending",
    "expect_host",
    "session_reused",
    "own_certificate_id",
    "set_groups",
    "set_servername_callback",
    "set_sigalgs",
    "verify_failure",
    "Wire",
]


def set_groups(context: SSL.Context, groups: str) -> bool:
    """Set the key-exchange groups in OpenSSL's list syntax (``*`` marks a client key share,
    ``/`` separates a server's preference tuples); False when OpenSSL refuses the list.

    ``SSL_CTX_set1_curves_list`` is the old name of ``SSL_CTX_set1_groups_list`` (same function,
    the only one the binding exports); it takes ML-KEM and hybrid names like any other group.
    """
    ok = lib.SSL_CTX_set1_curves_list(context._context, groups.encode("ascii")) == 1
    if not ok:
        lib.ERR_clear_error()  # a refused list leaves an error that would poison the next call
    return ok


def set_sigalgs(context: SSL.Context, sigalgs: str) -> bool:
    """Set the TLS signature schemes (``signature_algorithms``: what a client offers and accepts,
    what a server signs and verifies with) in OpenSSL's list syntax (``mldsa65:ed25519``);
    False when OpenSSL refuses the list."""
    ok = lib.SSL_CTX_set1_sigalgs_list(context._context, sigalgs.encode("ascii")) == 1
    if not ok:
        lib.ERR_clear_error()
    return ok


def own_certificate_id(connection: SSL.Connection) -> int:
    """Which of its context's certificates a connection presented, as the address of OpenSSL's
    ``X509`` (0 for none): stable as long as the context lives, so facts about each certificate
    are worked out once per context, not once per handshake."""
    cert = lib.SSL_get_certificate(connection._ssl)
    return 0 if cert == ffi.NULL else int(ffi.cast("uintptr_t", cert))


def accepts_groups(groups: str) -> bool:
    """Whether this OpenSSL accepts ``groups`` as a TLS group list (probes a throw-away context)."""
    return set_groups(SSL.Context(SSL.TLS_METHOD), groups)


def clear_partial_write(context: SSL.Context) -> None:
    """Undo pyOpenSSL's ``SSL_MODE_ENABLE_PARTIAL_WRITE``: Python's ``ssl`` writes all or nothing
    and trio ignores ``write()``'s count, so with partial writes data after the first 16 KiB
    record of a large write was silently lost."""
    context.clear_mode(lib.SSL_MODE_ENABLE_PARTIAL_WRITE)


def expect_host(
    connection: SSL.Connection, host: str, address: bytes | None, *, check_common_name: bool
) -> None:
    """Make certificate verification check ``host``: a DNS name, or an IP address given packed
    as ``address``, as Python's ``ssl`` does: inside the handshake, so a mismatch is a
    verification failure and the client sends the server a ``bad_certificate`` alert.
    pyOpenSSL checks no name by itself.

    Partial wildcards (``f*.example``) are refused like in Python's ``ssl``, and the subject's
    common name is ignored unless ``check_common_name`` (``hostname_checks_common_name``).
    """
    param = lib.SSL_get0_param(connection._ssl)
    flags = lib.X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS
    if not check_common_name:
        flags |= lib.X509_CHECK_FLAG_NEVER_CHECK_SUBJECT
    lib.X509_VERIFY_PARAM_set_hostflags(param, flags)
    if address is None:
        name = host.encode("ascii")
        ok = lib.X509_VERIFY_PARAM_set1_host(param, name, len(name))
    else:
        ok = lib.X509_VERIFY_PARAM_set1_ip(param, address, len(address))
    if ok != 1:
        lib.ERR_clear_error()
        raise ValueError(f"cannot verify the server against host name {host!r}")


def verify_failure(connection: SSL.Connection) -> tuple[int, str] | None:
    """OpenSSL's verification result after a failed handshake, as ``(code, message)`` (the
    ``verify_code``/``verify_message`` of Python's ``SSLCertVerificationError``), or None."""
    code = int(lib.SSL_get_verify_result(connection._ssl))
    if code == 0:  # X509_V_OK
        return None
    text = ffi.string(lib.X509_verify_cert_error_string(code)).decode("utf-8", "replace")
    return code, text


class Wire:
    """One connection's path between the stdlib memory BIOs and OpenSSL: each call moves what
    arrived into OpenSSL, runs one OpenSSL call and moves what it wrote out, in one Python
    frame. Python's ``ssl`` does that in C; here every extra frame, attribute lookup and
    exception is paid on every read and write, so the hot calls avoid pyOpenSSL's wrappers
    (its per-call checks of callback helpers only matter when a call fails, and then
    pyOpenSSL's own error raising runs, so errors are exactly what pyOpenSSL raises).

    ``handshake``, ``read`` and ``write`` return None for "want read" (the caller raises the
    ``ssl`` exception: this module knows no ``ssl`` exceptions) and raise pyOpenSSL's
    ``SSL.Error`` for anything else. On success and "want read" the output has moved; after
    an error it is left to the caller, which must decide about the failure first (a server's
    alert is sent before its error is reported).

    The output array grows to the largest output seen, up to :attr:`LIMIT`; more than that (a
    single huge write) is moved in pieces, so one write of many megabytes does not pin that
    much memory per connection.
    """

    LIMIT = 256 * 1024
    __slots__ = (
        "_array",
        "_connection",
        "_from",
        "_incoming",
        "_into",
        "_outgoing",
        "_size",
        "_raw",
        "_view",
        "eof_fed",
    )

    def __init__(self, connection: SSL.Connection, incoming: Any, outgoing: Any) -> None:
        self._connection = connection
        self._raw = connection._ssl
        self._into = connection._into_ssl
        self._from = connection._from_ssl
        self._incoming = incoming
        self._outgoing = outgoing
        self._array: Any = None
        self._view = memoryview(b"")
        self._size = 0
        self.eof_fed = False

    def feed(self) -> bytes:
        """Hand everything that arrived to OpenSSL, and the end of the stream once it came
        (from then on OpenSSL sees EOF, not "want read"); returns the bytes (a client watches
        its first ones for a HelloRetryRequest)."""
        incoming = self._incoming
        data: bytes = incoming.read()
        if data:
            result = lib.BIO_write(self._into, data, len(data))
            if result <= 0:
                self._connection._handle_bio_errors(self._into, result)
        if incoming.eof and not self.eof_fed:
            self._connection.bio_shutdown()
            self.eof_fed = True
        return data

    def pending(self) -> int:
        """How many bytes OpenSSL wrote and :meth:`drain` has not moved yet."""
        return int(lib.BIO_get_mem_data(self._from, ffi.NULL))

    def take(self) -> Any:
        """Everything OpenSSL wrote, as a buffer over a fresh C array (``MemoryBIO.write``
        copies it once), or None: for the server's first flight, which is inspected."""
        size = lib.BIO_get_mem_data(self._from, ffi.NULL)
        if size <= 0:
            return None
        chunk = _uncleared("char[]", size)
        got = lib.BIO_read(self._from, chunk, size)
        return ffi.buffer(chunk, got) if got > 0 else None

    def drain(self) -> None:
        """Hand everything OpenSSL wrote to the outgoing ``MemoryBIO`` (which copies it at
        once), with one ``BIO_read`` per piece into the reused array."""
        bio = self._from
        size = lib.BIO_get_mem_data(bio, ffi.NULL)
        while size > 0:
            if size > self._size and self._size < self.LIMIT:
                self._size = min(max(size, 2 * self._size), self.LIMIT)
                self._array = _uncleared("char[]", self._size)
                self._view = memoryview(ffi.buffer(self._array))
            got = lib.BIO_read(bio, self._array, min(size, self._size))
            if got <= 0:
                return
            self._outgoing.write(self._view[:got])
            size -= got

    def handshake(self) -> bool | None:
        """``SSL_do_handshake``: True when done, None for "want read"; output not moved."""
        ssl = self._raw
        result = lib.SSL_do_handshake(ssl)
        if result == 1:
            return True
        if lib.SSL_get_error(ssl, result) == _WANT_READ:
            return None
        self._connection._raise_ssl_error(ssl, result)
        return None  # pyOpenSSL raised; kept for the type checker

    def read(self, size: int, buffer: Any) -> Any:
        """``SSL_read`` of at most ``size`` bytes (into ``buffer`` when given: then 0 or less
        means the whole buffer): the bytes, or the count with ``buffer``; None for "want
        read". For an established connection that is not closing, whose incoming BIO was not
        at EOF when the caller looked (if EOF comes with the bytes fed here, OpenSSL is asked).

        When nothing arrived and nothing waits decrypted or in the BIO, "want read" comes
        without calling OpenSSL (asyncio ends every burst of reads this way): a partial record
        in OpenSSL's buffer needs more bytes, and those would be in the BIO.
        """
        if self._incoming.pending:
            self.feed()
        elif self.eof_fed:
            pass  # OpenSSL must say how the stream ended
        elif lib.BIO_get_mem_data(self._into, ffi.NULL) <= 0 and lib.SSL_pending(self._raw) <= 0:
            return None
        if lib.ERR_peek_error():
            lib.ERR_clear_error()
        return self.decrypt(size, buffer)

    def decrypt(self, size: int, buffer: Any) -> Any:
        """:meth:`read` without the feed and the shortcut, in any state: what OpenSSL says."""
        ssl = self._raw
        if buffer is None:
            chunk = _uncleared("char[]", size)
            result = lib.SSL_read(ssl, chunk, size)
            if result > 0:
                if lib.BIO_get_mem_data(self._from, ffi.NULL) > 0:
                    self.drain()
                return ffi.buffer(chunk, result)[:]
        else:
            with ffi.from_buffer(buffer, require_writable=True) as data:
                limit = len(data) if size <= 0 else min(size, len(data))
                result = lib.SSL_read(ssl, data, limit)
            if result > 0:
                if lib.BIO_get_mem_data(self._from, ffi.NULL) > 0:
                    self.drain()
                return int(result)
        return self._failed(result)

    def write(self, data: Any) -> int | None:
        """``SSL_write`` of all of ``data`` (partial writes are off, see
        :func:`clear_partial_write`): its length, or None for "want read"."""
        if self._incoming.pending:
            self.feed()
        if lib.ERR_peek_error():
            lib.ERR_clear_error()
        with ffi.from_buffer(data) as view:
            size = len(view)
            if not size:
                return 0
            if size > 2147483647:
                raise ValueError("Cannot send more than 2**31-1 bytes at once.")
            result = lib.SSL_write(self._raw, view, size)
        if result > 0:
            self.drain()
            return int(result)
        return self._failed(result)

    def _failed(self, result: int) -> Any:
        """After a failed read or write: None for "want read" (output moved), or pyOpenSSL's
        exception (output left for the caller, as in :meth:`handshake`)."""
        if lib.SSL_get_error(self._raw, result) == _WANT_READ:
            self.drain()
            return None
        self._connection._raise_ssl_error(self._raw, result)
        return None


_WANT_READ = lib.SSL_ERROR_WANT_READ


def session_reused(connection: SSL.Connection) -> bool:
    """Whether the handshake resumed an earlier session (a TLS 1.3 ticket, which still runs a
    fresh key exchange: OpenSSL refuses resumption without one unless told otherwise)."""
    return bool(lib.SSL_session_reused(connection._ssl))


#: Whether this thread's OpenSSL error queue holds anything (the C function itself: asked before
#: every call, so it costs no Python frame); :func:`clear_error_queue` when it does.
error_pending: Callable[[], int] = lib.ERR_peek_error


def clear_error_queue() -> None:
    """Forget errors left in this thread's OpenSSL error queue by unrelated calls.

    ``SSL_get_error`` reports any queued error as a fatal ``SSL_ERROR_SSL``, so a stale entry
    (from a refused configuration or another library sharing the thread) would turn an ordinary
    "want read" into a broken connection. Python's ``ssl`` clears the queue the same way. The
    queue is almost always empty, so callers ask :data:`error_pending` first.
    """
    lib.ERR_clear_error()


#: What a server-name callback returns: None to go on, or a TLS alert number to refuse.
ServernameCallback = Callable[[SSL.Connection], "int | None"]


def set_servername_callback(context: SSL.Context, callback: ServernameCallback) -> Any:
    """Call ``callback`` when a client's hello names a server (SNI); a returned alert number
    aborts the handshake with that alert, as Python's ``sni_callback`` allows.

    pyOpenSSL's own ``set_tlsext_servername_callback`` cannot refuse: its only way is raising,
    which it reports through ``sys.excepthook``. The returned handle must be kept alive as long
    as the context is (the C side holds only a raw pointer to it).
    """

    def servername(ssl: Any, alert: Any, arg: Any) -> int:
        connection = SSL.Connection._reverse_mapping.get(ssl)
        if connection is None:
            return int(lib.SSL_TLSEXT_ERR_OK)
        try:
            refusal = callback(connection)
        except Exception:  # as in Python's ssl: the handshake fails, nothing crosses into C
            logger.exception("sni_callback failed; refusing the handshake")
            refusal = 40  # handshake_failure
        if refusal is None:
            return int(lib.SSL_TLSEXT_ERR_OK)
        alert[0] = int(refusal)
        return int(lib.SSL_TLSEXT_ERR_ALERT_FATAL)

    handle = ffi.callback("int (*)(SSL *, int *, void *)", servername)
    lib.SSL_CTX_set_tlsext_servername_callback(context._context, handle)
    return handle
