"""The TLS layer for TCP: post-quantum key exchange through pyOpenSSL on ``cryptography``'s
OpenSSL, behind an ``ssl.SSLContext`` that asyncio, trio, anyio and httpx accept.

The only package that knows pyOpenSSL's private names and the C symbols of ``cryptography``'s
binding; every one is listed in :data:`.version.REQUIRED_INTERNALS` and checked, with the
releases and with OpenSSL's ML-KEM support, before anything else here is imported. Build
contexts with :func:`pq_quic_plugin.ssl_context`, which also serves policy ``off`` without this
package (so a missing ML-KEM never breaks a deployment that turned post-quantum off).
"""

from .version import check_mlkem, check_tls_binding

check_tls_binding()
check_mlkem()

from .connection import PostQuantumSSLObject  # noqa: E402
from .context import PostQuantumSSLContext  # noqa: E402
from .errors import PostQuantumRefusedError  # noqa: E402
from .groups import QuicOnlyGroupError, split_tls_groups, tls_group_policy  # noqa: E402
from .lookup import (  # noqa: E402
    negotiated_group,
    negotiated_signature_scheme,
    post_quantum_auth,
    tls_object_of,
)

__all__ = [
    "PostQuantumRefusedError",
    "PostQuantumSSLContext",
    "PostQuantumSSLObject",
    "QuicOnlyGroupError",
    "negotiated_group",
    "negotiated_signature_scheme",
    "post_quantum_auth",
    "split_tls_groups",
    "tls_group_policy",
    "tls_object_of",
]
