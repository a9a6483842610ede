"""Every call into OpenSSL that pyOpenSSL has no public API for, in one small module.

Each function here uses private names of pyOpenSSL (``Context._context``, ``Connection._ssl``,
``Connection._from_ssl``, ``Connection._reverse_mapping``) or C symbols of ``cryptography``'s
binding (``OpenSSL._util.lib``); all of them are listed in :data:`.version.REQUIRED_INTERNALS` and
checked at import. Keeping them here means the rest of the layer uses pyOpenSSL's public API only,
and a pyOpenSSL that grows ``Context.set_groups`` (pyca/pyopenssl#1477) changes one function.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from OpenSSL._util import ffi, lib

logger = logging.getLogger("pq_quic_plugin.tls")

#: Arrays that OpenSSL fills at once need no zeroing first (pyOpenSSL allocates the same way).
_uncleared = ffi.new_allocator(should_clear_after_alloc=False)

__all__ = [
    "OutputPipe",
    "accepts_groups",
    "clear_error_queue",
    "clear_partial_write",
    "error_pending",
    "expect_host",
    "feed",
    "pending_output",
    "read_bytes",
    "read_into",
    "read_would_wait",
    "take_output",
    "session_reused",
    "set_groups",
    "set_servername_callback",
    "verify_failure",
    "write_all",
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


def accepts_groups(groups: str) -> bool:
    """Whether this OpenSSL accepts ``groups`` as a TLS group list (probes a throw-away context)."""
    return set_groups(SSL.Context(SSL.TLS_METHOD), groups)


def clear_partial_write(context: SSL.Context) -> None:
    """Undo pyOpenSSL's ``SSL_MODE_ENABLE_PARTIAL_WRITE``: Python's ``ssl`` writes all or nothing
    and trio ignores ``write()``'s count, so with partial writes data after the first 16 KiB
    record of a large write was silently lost."""
    context.clear_mode(lib.SSL_MODE_ENABLE_PARTIAL_WRITE)


def expect_host(connection: SSL.Connection, host: str, *, check_common_name: bool) -> None:
    """Make certificate verification check ``host`` (a DNS name or an IP address), as Python's
    ``ssl`` does: inside the handshake, so a mismatch is a verification failure and the client
    sends the server a ``bad_certificate`` alert. pyOpenSSL checks no name by itself.

    Partial wildcards (``f*.example``) are refused like in Python's ``ssl``, and the subject's
    common name is ignored unless ``check_common_name`` (``hostname_checks_common_name``).
    """
    param = lib.SSL_get0_param(connection._ssl)
    flags = lib.X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS
    if not check_common_name:
        flags |= lib.X509_CHECK_FLAG_NEVER_CHECK_SUBJECT
    lib.X509_VERIFY_PARAM_set_hostflags(param, flags)
    try:
        packed = ipaddress.ip_address(host).packed
    except ValueError:
        name = host.encode("ascii")
        ok = lib.X509_VERIFY_PARAM_set1_host(param, name, len(name))
    else:
        ok = lib.X509_VERIFY_PARAM_set1_ip(param, packed, len(packed))
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


def pending_output(connection: SSL.Connection) -> int:
    """How many bytes the connection has written to its outgoing memory BIO and not yet handed
    over: reading exactly that much costs no exception on the (frequent) empty case."""
    return int(lib.BIO_get_mem_data(connection._from_ssl, ffi.NULL))


def take_output(connection: SSL.Connection) -> Any:
    """What the connection wrote to its outgoing memory BIO, as a buffer over a fresh C array
    (no ``bytes`` copy: ``MemoryBIO.write`` copies it once), or None when there is nothing.

    Sized with ``BIO_get_mem_data`` first so the frequent empty case costs one C call and no
    exception (pyOpenSSL's ``bio_read`` raises ``WantReadError`` on an empty BIO).
    """
    size = lib.BIO_get_mem_data(connection._from_ssl, ffi.NULL)
    if size <= 0:
        return None
    chunk = _uncleared("char[]", size)
    got = lib.BIO_read(connection._from_ssl, chunk, size)
    return ffi.buffer(chunk, got) if got > 0 else None


def read_would_wait(connection: SSL.Connection) -> bool:
    """Whether ``SSL_read`` could only answer "want read" right now: no ciphertext waits in the
    incoming memory BIO and no decrypted byte waits in OpenSSL.

    A partial record may sit in OpenSSL's record buffer, but it needs more bytes to complete,
    and those would be in the BIO. The caller must also know that the connection is established,
    not failed, not closed by either side and not at EOF (those answer differently). Asking
    costs two C calls; the ``SSL_read`` it replaces costs a call, ``SSL_get_error`` and two
    exceptions, in about one asyncio read in six.
    """
    return (
        lib.BIO_get_mem_data(connection._into_ssl, ffi.NULL) <= 0
        and lib.SSL_pending(connection._ssl) <= 0
    )


def read_into(connection: SSL.Connection, buffer: Any, size: int) -> int:
    """``recv_into`` that decrypts straight into ``buffer`` (at most ``size`` bytes; 0 or less
    means the whole buffer). pyOpenSSL's own allocates a temporary array for every call and
    copies out of it; errors are raised exactly as pyOpenSSL raises them."""
    with ffi.from_buffer(buffer, require_writable=True) as data:
        limit = len(data) if size <= 0 else min(size, len(data))
        result = lib.SSL_read(connection._ssl, data, limit)
    if result <= 0:
        connection._raise_ssl_error(connection._ssl, result)
    return int(result)


def read_bytes(connection: SSL.Connection, size: int) -> bytes:
    """``recv`` without pyOpenSSL's per-call checks of its callback helpers (which can only
    hold a problem during a handshake, and are still consulted on any failure)."""
    chunk = _uncleared("char[]", size)
    result = lib.SSL_read(connection._ssl, chunk, size)
    if result <= 0:
        connection._raise_ssl_error(connection._ssl, result)
    return ffi.buffer(chunk, result)[:]


def write_all(connection: SSL.Connection, data: Any) -> int:
    """``send`` straight to ``SSL_write``: all of ``data`` or an error, since partial writes are
    off (:func:`clear_partial_write`). Errors are raised exactly as pyOpenSSL raises them."""
    with ffi.from_buffer(data) as view:
        size = len(view)
        if size > 2147483647:
            raise ValueError("Cannot send more than 2**31-1 bytes at once.")
        result = lib.SSL_write(connection._ssl, view, size)
    if result <= 0:
        connection._raise_ssl_error(connection._ssl, result)
    return int(result)


def feed(connection: SSL.Connection, data: bytes) -> None:
    """``bio_write`` without its type checks: ``data`` comes from ``MemoryBIO.read``."""
    result = lib.BIO_write(connection._into_ssl, data, len(data))
    if result <= 0:
        connection._handle_bio_errors(connection._into_ssl, result)


class OutputPipe:
    """Moves what a connection wrote to its outgoing memory BIO into a stdlib ``MemoryBIO``
    with one ``BIO_read`` per call into a reused array (no allocation per call).

    The array grows to the largest output seen, up to :attr:`LIMIT`; more than that (a single
    huge write) is moved in pieces, so one write of many megabytes does not pin that much
    memory per connection.
    """

    LIMIT = 256 * 1024
    __slots__ = ("_array", "_bio", "_size", "_view")

    def __init__(self, connection: SSL.Connection) -> None:
        self._bio = connection._from_ssl
        self._array: Any = None
        self._view = memoryview(b"")
        self._size = 0

    def move(self, outgoing: Any) -> None:
        """Hand everything pending to ``outgoing`` (which copies it at once)."""
        bio = self._bio
        size = lib.BIO_get_mem_data(bio, ffi.NULL)
        while size > 0:
            if size > self._size and self._size < self.LIMIT:
                self._size = min(max(size, 2 * self._size), self.LIMIT)
                self._array = _uncleared("char[]", self._size)
                self._view = memoryview(ffi.buffer(self._array))
            got = lib.BIO_read(bio, self._array, min(size, self._size))
            if got <= 0:
                return
            outgoing.write(self._view[:got])
            size -= got


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
