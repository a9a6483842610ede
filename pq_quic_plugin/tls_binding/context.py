"""``PostQuantumSSLContext``: an ``ssl.SSLContext`` whose connections run on pyOpenSSL.

It has to *be* an ``ssl.SSLContext``: asyncio, anyio and httpx check ``isinstance`` before they
take one. The stdlib half keeps the settings that Python's ``ssl`` already validates and reports
the same way (``verify_mode``, ``check_hostname``, ``options``, the version bounds, with their
coupling rules); the methods that would configure the system OpenSSL (certificates, trust, ALPN,
ciphers, server-name callback, key log) are overridden to record what OpenSSL 3.5+ should be
given instead. :meth:`wrap_bio`, the only entry point the event loops use, then builds the
pyOpenSSL side from those records (:mod:`.builder`) and returns a
:class:`~.connection.PostQuantumSSLObject`.

The post-quantum policy is fixed at creation. Under ``require`` the version floor is TLS 1.3
whatever a caller sets (generic code such as hypercorn's sets TLS 1.2 for RFC 7540), and a
ceiling below TLS 1.3 is refused: ML-KEM groups exist only in TLS 1.3.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any

from OpenSSL import SSL

from ..auth_policy import AuthPolicy
from ..policy import GroupPolicy, Policy
from . import builder, native
from .connection import PostQuantumSSLObject
from .groups import client_group_list, server_group_list
from .notices import ClassicalNotices

__all__ = ["PostQuantumSSLContext"]

logger = logging.getLogger("pq_quic_plugin.tls")

_TLS1_3 = ssl.TLSVersion.TLSv1_3
SniCallback = Callable[[Any, "str | None", Any], "int | None"]


def _version_number(version: ssl.TLSVersion) -> int:
    """OpenSSL's number for a bound; 0 means "no bound" (``MINIMUM/MAXIMUM_SUPPORTED``)."""
    return 0 if int(version) < 0 else int(version)


def _checked_sni(callback: Any) -> SniCallback | None:
    if callback is not None and not callable(callback):
        raise TypeError("not a callable object")
    return callback


def _checked_keylog(path: Any) -> str | None:
    """NSS key log lines (for Wireshark/tshark), as ``ssl`` writes them."""
    if path is None:
        return None
    path = os.fspath(path)
    open(path, "a").close()  # fail now, like ssl, on a path that cannot be written
    return str(path)


class _Setting:
    """A context setting kept in Python (``ssl.SSLContext`` would keep it in the stdlib's
    OpenSSL, which never handshakes here): checked on assignment, and a change rebuilds our
    OpenSSL context for later connections, like the setters of the context itself."""

    def __init__(self, attribute: str, check: Callable[[Any], Any]) -> None:
        self.attribute = attribute
        self.check = check

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return self if instance is None else getattr(instance, self.attribute)

    def __set__(self, instance: Any, value: Any) -> None:
        value = self.check(value)
        if value is getattr(instance, self.attribute, None):
            return  # unchanged: keep the built context
        setattr(instance, self.attribute, value)
        instance._changed()


class _Stdlib:
    """A setting ``ssl.SSLContext`` keeps and validates (the stdlib's own descriptor reads and
    writes it), whose change rebuilds our OpenSSL context for later connections."""

    def __init__(self, name: str) -> None:
        self.stdlib = getattr(ssl.SSLContext, name)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return self if instance is None else self.stdlib.__get__(instance, owner)

    def __set__(self, instance: Any, value: Any) -> None:
        self.stdlib.__set__(instance, value)
        instance._changed()


class PostQuantumSSLContext(ssl.SSLContext):
    """A TLS context for TCP with post-quantum key exchange; build one with ``ssl_context()``."""

    def __new__(
        cls, group_policy: GroupPolicy, *, server_side: bool, auth: AuthPolicy = AuthPolicy.PREFER
    ) -> PostQuantumSSLContext:
        protocol = ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT
        return super().__new__(cls, protocol)

    def __init__(
        self, group_policy: GroupPolicy, *, server_side: bool, auth: AuthPolicy = AuthPolicy.PREFER
    ) -> None:
        self._pq_policy = group_policy
        self._pq_server_side = server_side
        self._auth = AuthPolicy.parse(auth)
        self._extra_pairs: tuple[Any, ...] = ()
        self._pq_groups = (
            server_group_list(group_policy) if server_side else client_group_list(group_policy)
        )
        self._chain: tuple[Any, ...] = ()
        self._key: Any = None
        self._trust: list[builder.Trust] = []
        self._default_paths = False
        self._alpn: tuple[bytes, ...] = ()
        self._ciphers = builder.DEFAULT_CIPHERS
        self._keylog: str | None = None
        self._sni: SniCallback | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self._built: tuple[int, SSL.Context] | None = None  # (generation, context)
        #: The rate limit of this context's "NOT post-quantum" warnings (:mod:`.notices`).
        self.classical_notices = ClassicalNotices(logger)
        self.minimum_version = ssl.TLSVersion.TLSv1_2  # raised to TLS 1.3 under require

    # ------------------------------------------------------------------ what this context is

    @property
    def group_policy(self) -> GroupPolicy:
        """The resolved post-quantum policy: ``.policy``, ``.groups``, ``.describe()``."""
        return self._pq_policy

    @property
    def auth_policy(self) -> AuthPolicy:
        """The authentication policy (ML-DSA certificates, ``docs/auth.md``), fixed at creation."""
        return self._auth

    @property
    def openssl_groups(self) -> str:
        """The group list as OpenSSL was given it (tuples on a server, ``*`` key shares on a
        client), for logs and debugging."""
        return self._pq_groups

    def _changed(self) -> None:
        """A setting changed: the next connection gets a context built anew. Every setter that
        feeds :meth:`_spec` calls this, so a connection only compares one number."""
        with self._lock:
            self._generation += 1

    # ------------------------------------------------------------------ stdlib-kept settings

    options = _Stdlib("options")
    verify_mode = _Stdlib("verify_mode")
    verify_flags = _Stdlib("verify_flags")
    # Turning it on also sets verify_mode to CERT_REQUIRED (in C, past our setter).
    check_hostname = _Stdlib("check_hostname")

    # ------------------------------------------------------------------ version bounds

    @property  # type: ignore[override]
    def minimum_version(self) -> ssl.TLSVersion:
        return ssl.TLSVersion(super().minimum_version)

    @minimum_version.setter
    def minimum_version(self, value: ssl.TLSVersion) -> None:
        if self._pq_policy.policy is Policy.REQUIRE and (int(value) < 0 or value < _TLS1_3):
            value = _TLS1_3
        ssl.SSLContext.minimum_version.__set__(self, value)  # type: ignore[attr-defined]
        self._changed()

    @property  # type: ignore[override]
    def maximum_version(self) -> ssl.TLSVersion:
        return ssl.TLSVersion(super().maximum_version)

    @maximum_version.setter
    def maximum_version(self, value: ssl.TLSVersion) -> None:
        if self._pq_policy.policy is Policy.REQUIRE and 0 <= int(value) < _TLS1_3:
            raise ValueError(
                f"policy 'require' needs TLS 1.3 (post-quantum groups exist only there); "
                f"cannot cap the version at {ssl.TLSVersion(value).name}"
            )
        ssl.SSLContext.maximum_version.__set__(self, value)  # type: ignore[attr-defined]
        self._changed()

    # ------------------------------------------------------------------ what OpenSSL 3.5+ gets

    def load_cert_chain(
        self, certfile: Any, keyfile: Any = None, password: builder.Password = None
    ) -> None:
        self._chain, self._key = builder.load_chain(certfile, keyfile, password)
        self._changed()

    def add_cert_chain(
        self, certfile: Any, keyfile: Any = None, password: builder.Password = None
    ) -> None:
        """One more certificate/key pair for a server, next to ``load_cert_chain``'s (an ML-DSA
        one beside ECDSA, or the other way round): OpenSSL picks per ClientHello, among the pairs
        the authentication policy allows. Checked like ``load_cert_chain``."""
        if not self._pq_server_side:
            raise ValueError("add_cert_chain is for servers: a client presents one certificate")
        self._extra_pairs = (*self._extra_pairs, builder.load_chain(certfile, keyfile, password))
        self._changed()

    def load_verify_locations(
        self, cafile: Any = None, capath: Any = None, cadata: Any = None
    ) -> None:
        self._trust.extend(builder.load_trust(cafile, capath, cadata))
        self._changed()

    def set_default_verify_paths(self) -> None:
        """The system's CA store (``load_default_certs`` calls this), found by pyOpenSSL for the
        OpenSSL inside ``cryptography``, whose compiled-in paths may not exist."""
        if not self._default_paths:  # already loaded: no rebuild (4 ms with a big store)
            self._default_paths = True
            self._changed()

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        protocols = []
        for protocol in alpn_protocols:
            encoded = protocol.encode("ascii")
            if not 0 < len(encoded) <= 255:
                raise ValueError("ALPN protocols must be 1 to 255 in length")
            protocols.append(encoded)
        if tuple(protocols) != self._alpn:
            # httpcore sets the same list for every new connection; a rebuild each time costs
            # 0.14 ms with a CA file and about 4 ms with the system's store.
            self._alpn = tuple(protocols)
            self._changed()

    def set_ciphers(self, cipherlist: str, /) -> None:
        """TLS 1.2 cipher suites, in OpenSSL's syntax (TLS 1.3 suites are OpenSSL's defaults)."""
        if cipherlist == self._ciphers:
            return  # accepted before; no rebuild
        try:
            SSL.Context(SSL.TLS_METHOD).set_cipher_list(cipherlist.encode("ascii"))
        except SSL.Error:
            raise ssl.SSLError("No cipher can be selected.") from None
        self._ciphers = cipherlist
        self._changed()

    sni_callback = _Setting("_sni", _checked_sni)
    keylog_filename = _Setting("_keylog", _checked_keylog)

    def set_ecdh_curve(self, name: str, /) -> None:
        raise NotImplementedError(
            "choose key-exchange groups with ssl_context(groups=[...]) (names as on QUIC)"
        )

    def load_dh_params(self, path: str, /) -> None:
        raise NotImplementedError("finite-field Diffie-Hellman is not offered by this layer")

    def set_npn_protocols(self, npn_protocols: Any) -> None:
        raise NotImplementedError("NPN is obsolete; use set_alpn_protocols")

    # ------------------------------------------------------------------ connections

    def openssl_context(self) -> SSL.Context:
        """The pyOpenSSL context for new connections, rebuilt only after a change."""
        built = self._built
        if built is not None and built[0] == self._generation:
            return built[1]
        with self._lock:
            generation = self._generation
            if self._built is None or self._built[0] != generation:
                self._built = (generation, builder.build(self._spec()))
            return self._built[1]

    def _spec(self) -> builder.OpenSSLSpec:
        require = self._pq_policy.policy is Policy.REQUIRE
        options = builder.openssl_options(int(self.options))
        if require and options & SSL.OP_NO_TLSv1_3:
            raise ValueError("policy 'require' needs TLS 1.3, but OP_NO_TLSv1_3 is set")
        return builder.OpenSSLSpec(
            server_side=self._pq_server_side,
            groups=self._pq_groups,
            min_version=_version_number(self.minimum_version),
            max_version=_version_number(self.maximum_version),
            options=options,
            verify_mode=self.verify_mode,
            verify_flags=int(self.verify_flags),
            ciphers=self._ciphers,
            chain=self._chain,
            key=self._key,
            trust=tuple(self._trust),
            default_paths=self._default_paths,
            alpn=self._alpn,
            keylog=self._keylog,
            servername=self._on_servername if self._sni is not None else None,
            extra_pairs=self._extra_pairs,
            auth=self._auth,
        )

    def _on_servername(self, connection: SSL.Connection) -> int | None:
        """pyOpenSSL's view of SNI turned into ``ssl``'s ``sni_callback(obj, name, context)``."""
        callback, ref = self._sni, connection.get_app_data()
        tls_object = ref() if ref is not None else None  # PostQuantumSSLObject keeps a weakref
        if callback is None or tls_object is None:
            return None
        raw = connection.get_servername()
        result = callback(tls_object, raw.decode("ascii", "replace") if raw else None, self)
        return None if result is None else int(result)

    def wrap_bio(  # type: ignore[override]
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: Any = None,
    ) -> PostQuantumSSLObject:
        """A TLS connection over the two memory BIOs, as ``ssl.SSLContext.wrap_bio``."""
        if server_side != self._pq_server_side:
            made_for = "server" if self._pq_server_side else "client"
            raise ValueError(
                f"this post-quantum context was made for the {made_for} side "
                f"(ssl_context(server_side={self._pq_server_side}))"
            )
        if session is not None:
            raise ValueError("session resumption is not supported by the post-quantum layer")
        if server_side:
            if server_hostname:
                raise ValueError("server_hostname can only be specified in client mode")
            connection = SSL.Connection(self.openssl_context())
            connection.set_accept_state()
            hostname = None
        else:
            host = _host(server_hostname) if server_hostname is not None else None
            hostname = host[0] if host is not None else None
            if not hostname and self.check_hostname:
                raise ValueError("check_hostname requires server_hostname")
            connection = SSL.Connection(self.openssl_context())
            connection.set_connect_state()
            if host is not None and hostname:
                _client_names(connection, host, self)
        return PostQuantumSSLObject(
            self,
            connection,
            incoming,
            outgoing,
            server_side=server_side,
            server_hostname=hostname,
            policy=self._pq_policy,
            auth=self._auth,
        )

    def wrap_socket(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "the post-quantum TLS context works through wrap_bio (asyncio, trio, anyio, httpx's "
            "async client); for blocking sockets use an event loop or policy 'off'"
        )


@functools.lru_cache(maxsize=256)
def _host(value: str | bytes) -> tuple[str, bytes | None]:
    """``(ASCII name, packed address or None)`` for a ``server_hostname``: IDNA A-labels for a
    name, as ``ssl`` encodes it; an IP address as is, with its packed form for verification.
    Cached: a client connects to the same few names again and again, and parsing one costs
    more than the rest of its wrap_bio."""
    encoded = isinstance(value, bytes)  # already A-labels (anyio encodes with IDNA 2008)
    name = value.decode("ascii") if isinstance(value, bytes) else value
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return (name if encoded else name.encode("idna").decode("ascii")), None
    return name, address.packed


def _client_names(
    connection: SSL.Connection, host: tuple[str, bytes | None], context: ssl.SSLContext
) -> None:
    """SNI (never for an IP address, as in ``ssl``) and the name the certificate must match."""
    name, address = host
    if address is None:
        connection.set_tlsext_host_name(name.encode("ascii"))
    if context.check_hostname:
        native.expect_host(
            connection, name, address, check_common_name=context.hostname_checks_common_name
        )
