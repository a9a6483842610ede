"""Refuse to run on a pyOpenSSL, ``cryptography`` or OpenSSL the TCP layer was not tested with.

pyOpenSSL has no API yet for two things post-quantum TLS over TCP needs (choosing the key-exchange
groups, pyca/pyopenssl#1477, and checking the server's host name), nor for three the layer needs
to behave like Python's ``ssl`` (the size of its pending output, OpenSSL's own verification
message, a server-name callback that can refuse). So :mod:`.native` reaches pyOpenSSL's private
handles and the C functions of ``cryptography``'s binding (``OpenSSL._util.lib``), which a release
of either may rename or drop. As for aioquic, the version must be in the tested range and every
name in :data:`REQUIRED_INTERNALS` must exist, checked at import by the shared machinery
(:mod:`pq_quic_plugin.host_internals`); ``PQ_QUIC_SKIP_VERSION_CHECK=1`` skips that.

Then the one capability everything rests on is probed: the OpenSSL inside ``cryptography`` must
negotiate ML-KEM in TLS. Python's own ``ssl`` links the system OpenSSL, which may be older; ML-KEM
exists here only because the ``cryptography`` wheel bundles OpenSSL 3.5 or later. A
``cryptography`` built against an older system OpenSSL would give quietly classical TCP, so that
fails at import with the package to upgrade, and is never skipped.

:data:`REQUIRED_INTERNALS` is the one list of private names ``tls_binding/`` uses;
``tests/test_tls_internals.py`` fails when code here uses one that is not on it.
"""

from __future__ import annotations

from importlib import metadata

import OpenSSL._util as openssl_util
from OpenSSL import SSL

from ..host_internals import SKIP_ENV, Internal, Release, check_releases, names_of

__all__ = [
    "CRYPTOGRAPHY_SUPPORTED",
    "PYOPENSSL_SUPPORTED",
    "REQUIRED_INTERNALS",
    "SKIP_ENV",
    "OpenSSLWithoutMLKEM",
    "UnsupportedPyOpenSSLVersion",
    "check_mlkem",
    "check_tls_binding",
]

#: The pyOpenSSL releases this layer was tested against: [minimum, maximum). 26.0 added
#: ``Connection.get_group_name``, which reports the negotiated group.
PYOPENSSL_SUPPORTED = ((26, 0), (27, 0))
#: The ``cryptography`` releases whose binding (``lib``) has every name below; pyOpenSSL 26
#: itself caps ``cryptography`` below 51.
CRYPTOGRAPHY_SUPPORTED = ((46, 0), (51, 0))

_NATIVE = "tls_binding/native.py"
_LIB = "OpenSSL._util.lib"
#: Held here so the check still knows which entries are C symbols if ``lib`` itself is gone.
_BINDING = openssl_util.lib


#: Every private name (and every C symbol of cryptography's binding) the layer relies on.
REQUIRED_INTERNALS: tuple[Internal, ...] = (
    # The binding's C functions are reached through pyOpenSSL's private module.
    *names_of(openssl_util, _NATIVE, "lib ffi"),
    # The raw handles behind a Context and a Connection, the SSL*-to-Connection map that lets a
    # raw callback find its Connection again, and pyOpenSSL's error raising (for a read straight
    # into the caller's buffer).
    *names_of(SSL.Context, _NATIVE, instance="_context"),
    *names_of(
        SSL.Connection,
        _NATIVE,
        "_reverse_mapping _raise_ssl_error _handle_bio_errors",
        instance="_ssl _from_ssl _into_ssl",
    ),
    # Groups, host-name checks, verification messages, output size, error queue, resumption,
    # write mode, server-name callback, direct handshake steps, reads and output, signature
    # schemes and the certificate a server presented.
    *names_of(
        _BINDING,
        _NATIVE,
        "SSL_CTX_set1_curves_list SSL_get0_param X509_VERIFY_PARAM_set1_host"
        " X509_VERIFY_PARAM_set1_ip X509_VERIFY_PARAM_set_hostflags"
        " X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS X509_CHECK_FLAG_NEVER_CHECK_SUBJECT"
        " SSL_get_verify_result X509_verify_cert_error_string BIO_get_mem_data ERR_clear_error"
        " SSL_session_reused SSL_read SSL_pending BIO_read SSL_write BIO_write ERR_peek_error"
        " SSL_MODE_ENABLE_PARTIAL_WRITE SSL_CTX_set_tlsext_servername_callback"
        " SSL_TLSEXT_ERR_OK SSL_TLSEXT_ERR_ALERT_FATAL SSL_do_handshake SSL_get_error"
        " SSL_ERROR_WANT_READ SSL_CTX_set1_sigalgs_list SSL_get_certificate",
        owner_label=_LIB,
    ),
)


class UnsupportedPyOpenSSLVersion(ImportError):
    """pyOpenSSL or cryptography is outside the tested range or lacks an internal we use."""


class OpenSSLWithoutMLKEM(ImportError):
    """The OpenSSL inside ``cryptography`` cannot negotiate ML-KEM in TLS."""


def check_tls_binding(
    pyopenssl_version: str | None = None,
    cryptography_version: str | None = None,
    internals: tuple[Internal, ...] = REQUIRED_INTERNALS,
) -> None:
    """Raise :class:`UnsupportedPyOpenSSLVersion` unless pyOpenSSL and cryptography are in their
    tested ranges and every name in ``internals`` exists; a missing C symbol is blamed on
    cryptography (whose binding it is), any other name on pyOpenSSL."""
    check_releases(
        Release("cryptography", CRYPTOGRAPHY_SUPPORTED, cryptography_version),
        Release("pyOpenSSL", PYOPENSSL_SUPPORTED, pyopenssl_version),
        internals,
        lambda item: item.owner is _BINDING,
        user="pq-quic-plugin's TLS layer for TCP",
        error=UnsupportedPyOpenSSLVersion,
    )


def check_mlkem(probe: str = "X25519MLKEM768") -> None:
    """Raise :class:`OpenSSLWithoutMLKEM` unless the OpenSSL in use accepts ``probe`` as a TLS
    group: the difference between a post-quantum and a quietly classical TCP layer."""
    from .native import accepts_groups

    if accepts_groups(probe):
        return
    openssl = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode("ascii", "replace")
    raise OpenSSLWithoutMLKEM(
        f"post-quantum TLS over TCP needs ML-KEM ({probe}) in the OpenSSL that the "
        f"'cryptography' package uses, but cryptography {metadata.version('cryptography')} runs "
        f"on {openssl}, which cannot negotiate it (OpenSSL 3.5 or later can). Upgrade the two "
        "packages together, from PyPI's wheels, which bundle a recent OpenSSL: "
        "pip install --upgrade cryptography pyOpenSSL. A cryptography built against an older "
        "system OpenSSL (a distribution package, or pip --no-binary) cannot do it. "
        "Python's own ssl module is not used for this and needs no change."
    )
