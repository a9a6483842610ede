"""Turn what an ``ssl.SSLContext`` was told into a pyOpenSSL ``Context``.

pyOpenSSL freezes a ``Context`` once a ``Connection`` was made from it, while ``ssl.SSLContext``
may be changed at any time (httpcore sets ALPN on a context that already served connections). So
the post-quantum context records settings (:class:`OpenSSLSpec`) and builds a fresh pyOpenSSL
``Context`` from them whenever they changed; connections made earlier keep the one they had,
exactly as with Python's ``ssl``.

Certificates and keys are read once, when the caller loads them, so that a wrong path or
password fails at configuration time like Python's ``ssl``, not at the first handshake. Keys go
through ``cryptography`` (which decrypts them, for every key type it knows, ML-DSA included)
and reach OpenSSL unencrypted, in memory only.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from OpenSSL import SSL, crypto

from ..auth_policy import AuthPolicy
from . import auth, native

__all__ = ["OpenSSLSpec", "build", "load_chain", "load_trust"]

#: Python's default TLS 1.2 cipher string, so TLS 1.2 here is exactly as strict as with ``ssl``.
DEFAULT_CIPHERS = (
    "@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM"
)

#: ``ssl`` options honoured, with pyOpenSSL's value for each (the two OpenSSL builds may number
#: them differently). Compression and renegotiation are always off (CRIME; renegotiation attacks).
_OPTIONS = (
    (ssl.OP_NO_TLSv1_2, SSL.OP_NO_TLSv1_2),
    (ssl.OP_NO_TLSv1_3, SSL.OP_NO_TLSv1_3),
    (ssl.OP_NO_TICKET, SSL.OP_NO_TICKET),
    (ssl.OP_CIPHER_SERVER_PREFERENCE, SSL.OP_CIPHER_SERVER_PREFERENCE),
    # Only in a Python built on OpenSSL 3 (0 elsewhere, so never set).
    (getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0), SSL.OP_IGNORE_UNEXPECTED_EOF),
)
_ALWAYS = SSL.OP_ALL | SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION

#: A trust source: ("file", cafile, capath) or ("cert", certificate).
Trust = tuple[str, str | None, str | None] | tuple[str, x509.Certificate]
PrivateKey = PrivateKeyTypes
_PYOPENSSL_KEY_TYPES = (
    dsa.DSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    rsa.RSAPrivateKey,
)
Password = str | bytes | bytearray | Callable[[], str | bytes | bytearray] | None


@dataclass(frozen=True, eq=False)
class OpenSSLSpec:
    """Everything a pyOpenSSL ``Context`` is built from."""

    server_side: bool
    groups: str
    min_version: int
    max_version: int
    options: int
    verify_mode: ssl.VerifyMode
    verify_flags: int
    ciphers: str = DEFAULT_CIPHERS
    chain: tuple[x509.Certificate, ...] = ()
    key: PrivateKey | None = None
    trust: tuple[Trust, ...] = ()
    default_paths: bool = False
    alpn: tuple[bytes, ...] = ()
    keylog: str | None = None
    servername: native.ServernameCallback | None = None
    extra_pairs: tuple[auth.Pair, ...] = ()
    """A server's certificate/key pairs beyond ``chain``/``key`` (an ML-DSA one next to ECDSA)."""
    auth: AuthPolicy = AuthPolicy.PREFER


def openssl_options(stdlib_options: int) -> int:
    """pyOpenSSL's options for the ``ssl`` options that matter to a TLS 1.2/1.3 connection."""
    options = _ALWAYS
    for stdlib, ours in _OPTIONS:
        if stdlib_options & stdlib:
            options |= ours
    return options


def _verify_flags(mode: ssl.VerifyMode, server_side: bool) -> int:
    if mode == ssl.CERT_NONE:
        return SSL.VERIFY_NONE
    if mode == ssl.CERT_REQUIRED and server_side:
        return SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    return SSL.VERIFY_PEER


def build(spec: OpenSSLSpec) -> SSL.Context:
    """A fresh pyOpenSSL ``Context`` for ``spec``; ``ssl.SSLError`` or ``ValueError`` when OpenSSL
    refuses part of it."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD if spec.server_side else SSL.TLS_CLIENT_METHOD)
    native.clear_partial_write(ctx)
    ctx.set_options(spec.options)
    try:
        ctx.set_min_proto_version(spec.min_version)
        ctx.set_max_proto_version(spec.max_version)
        ctx.set_cipher_list(spec.ciphers.encode("ascii"))
    except SSL.Error as exc:
        raise ssl.SSLError(f"OpenSSL refused the protocol settings: {exc}") from None
    if not native.set_groups(ctx, spec.groups):
        raise ValueError(f"OpenSSL refused the key-exchange group list {spec.groups!r}")
    ctx.set_verify(_verify_flags(spec.verify_mode, spec.server_side))
    if spec.server_side:
        # Without a session id context OpenSSL refuses resumption when it verifies clients
        # ("session id context uninitialized"); Python's ssl sets one for the same reason.
        ctx.set_session_id(b"pq_quic_plugin")
    if not native.set_sigalgs(ctx, auth.sigalgs_list(spec.auth)):
        raise ValueError(f"OpenSSL refused the signature algorithms for policy {spec.auth}")
    _use_pairs(ctx, _pairs(spec))
    _apply_trust(ctx, spec.trust, spec.default_paths, spec.verify_flags)
    if spec.alpn:
        if spec.server_side:
            ctx.set_alpn_select_callback(_alpn_selector(spec.alpn))
        else:
            ctx.set_alpn_protos(list(spec.alpn))
    if spec.keylog:
        ctx.set_keylog_callback(_keylog_writer(spec.keylog))
    if spec.servername is not None and spec.server_side:
        # The handle lives as long as the Context: connections keep their Context alive.
        ctx.pq_servername_handle = native.set_servername_callback(  # type: ignore[attr-defined]
            ctx, spec.servername
        )
    return ctx


def _pairs(spec: OpenSSLSpec) -> list[auth.Pair]:
    """The pairs to load: a client's (its certificate, for servers that ask) as given; a
    server's as its authentication policy allows, refused here if that leaves none."""
    pairs: list[auth.Pair] = [(spec.chain, spec.key)] if spec.chain and spec.key is not None else []
    pairs.extend(spec.extra_pairs)
    if not spec.server_side or not pairs:
        return pairs
    usable = auth.usable_pairs(pairs, spec.auth)
    if not usable:
        if spec.auth is AuthPolicy.REQUIRE:
            raise ValueError(
                "authentication policy 'require' needs an ML-DSA certificate: pass one in "
                "certificates=[(certfile, keyfile)] (python -m pq_quic_plugin.devcert DIR "
                "--sig ml-dsa-65 makes a test one)"
            )
        raise ValueError(
            "authentication policy 'off' never uses an ML-DSA certificate, and this server has "
            "no other: add a classical (ECDSA) certificate or use policy 'prefer'"
        )
    return usable


def _use_pairs(ctx: SSL.Context, pairs: list[auth.Pair]) -> None:
    """Load each pair into the slot OpenSSL keeps for its key type, and remember every chain for
    the facts (:attr:`pq_chains`, keyed by the leaf's DER).

    One pair keeps its chain in the context's extra certificates, as before. With several, the
    extra certificates would be sent with *every* leaf (an ECDSA CA behind an ML-DSA leaf), so
    each chain goes into its own slot, which only ``use_certificate_chain_file`` reaches: the
    public certificates pass through a temporary file.
    """
    chains: dict[bytes, tuple[x509.Certificate, ...]] = {}
    for chain, key in pairs:
        chains[chain[0].public_bytes(serialization.Encoding.DER)] = chain
        if len(pairs) > 1 and len(chain) > 1:
            _use_chain_file(ctx, chain)
        else:
            ctx.use_certificate(chain[0])
            for extra in chain[1:]:
                ctx.add_extra_chain_cert(extra)
        _use_private_key(ctx, key)
    ctx.pq_chains = chains  # type: ignore[attr-defined]
    ctx.pq_auth_cache = {}  # type: ignore[attr-defined]  # (certificate id, TLS 1.3) -> facts


def _use_chain_file(ctx: SSL.Context, chain: tuple[x509.Certificate, ...]) -> None:
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    with tempfile.NamedTemporaryFile(suffix=".pem") as handle:
        handle.write(pem)
        handle.flush()
        ctx.use_certificate_chain_file(handle.name)


def _apply_trust(
    ctx: SSL.Context, trust: Sequence[Trust], default_paths: bool, verify_flags: int
) -> None:
    store = ctx.get_cert_store()
    if store is None:  # a fresh SSL_CTX always has one
        raise ssl.SSLError("OpenSSL gave the context no certificate store")
    store.set_flags(verify_flags)
    for entry in trust:
        if entry[0] == "file":
            ctx.load_verify_locations(entry[1], entry[2])  # type: ignore[arg-type, misc]
        else:
            store.add_cert(crypto.X509.from_cryptography(entry[1]))  # type: ignore[arg-type]
    if default_paths:
        ctx.set_default_verify_paths()


def _alpn_selector(ours: tuple[bytes, ...]) -> Callable[[SSL.Connection, list[bytes]], Any]:
    """The server picks by its own preference, like Python's ``ssl``; no overlap means no ALPN
    (not a failed handshake), as there."""

    def select(connection: SSL.Connection, offered: list[bytes]) -> Any:
        for protocol in ours:
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS

    return select


def _keylog_writer(path: str) -> Callable[[SSL.Connection, bytes], None]:
    """NSS key log lines for Wireshark/tshark, like ``SSLContext.keylog_filename``."""

    def write(connection: SSL.Connection, line: bytes) -> None:
        with open(path, "ab") as log:
            log.write(line + b"\n")

    return write


# ------------------------------------------------------------------ loading, at configuration time

_PEM_KEY = re.compile(
    rb"-----BEGIN (?:[A-Z0-9 ]+ )?PRIVATE KEY-----.+?-----END (?:[A-Z0-9 ]+ )?PRIVATE KEY-----",
    re.S,
)


def _read(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _password_bytes(password: Password) -> bytes | None:
    value = password() if callable(password) else password
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError("password should be a string, bytes, bytearray or a callable returning one")


def _private_key(data: bytes, password: Password, where: str) -> PrivateKey:
    """Decrypt with ``cryptography``; the password is asked for only if the key is encrypted,
    as with ``ssl``."""
    block = _PEM_KEY.search(data)
    if block is None:
        raise ssl.SSLError(f"no PEM private key in {where}")
    try:
        return serialization.load_pem_private_key(block.group(0), password=None)
    except TypeError:  # encrypted: now the password is needed
        secret = _password_bytes(password)
        if secret is None:
            raise ssl.SSLError(
                f"the private key in {where} is encrypted and no password was given"
            ) from None
        try:
            return serialization.load_pem_private_key(block.group(0), password=secret)
        except ValueError:
            raise ssl.SSLError(
                f"cannot decrypt the private key in {where}: wrong password?"
            ) from None
    except ValueError as exc:
        raise ssl.SSLError(f"cannot read the private key in {where}: {exc}") from None


def _use_private_key(ctx: SSL.Context, key: PrivateKey) -> None:
    """pyOpenSSL takes ``cryptography`` keys of the classical types only; any other type OpenSSL
    knows (ML-DSA) goes in as unencrypted PKCS#8, in memory, through its deprecated ``PKey``."""
    if isinstance(key, _PYOPENSSL_KEY_TYPES):
        ctx.use_privatekey(key)
        return
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.use_privatekey(crypto.load_privatekey(crypto.FILETYPE_ASN1, der))


def load_chain(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None,
    password: Password,
) -> tuple[tuple[x509.Certificate, ...], PrivateKey]:
    """``load_cert_chain``'s files as (leaf first chain, key), checked to belong together."""
    cert_data = _read(certfile)
    try:
        chain = tuple(x509.load_pem_x509_certificates(cert_data))
    except ValueError:
        raise ssl.SSLError(f"no PEM certificate in {os.fspath(certfile)}") from None
    key_source = keyfile if keyfile is not None else certfile
    key = _private_key(_read(key_source), password, os.fspath(key_source))
    probe = SSL.Context(SSL.TLS_SERVER_METHOD)
    try:
        probe.use_certificate(chain[0])
        _use_private_key(probe, key)
        probe.check_privatekey()
    except SSL.Error:
        raise ssl.SSLError(
            f"the private key in {os.fspath(key_source)} does not match the certificate in "
            f"{os.fspath(certfile)} (key values mismatch)"
        ) from None
    return chain, key


def _der_certificates(data: bytes) -> list[x509.Certificate]:
    """Concatenated DER certificates, as ``cadata`` bytes may hold."""
    certs = []
    while data:
        if len(data) < 2 or data[0] != 0x30:
            raise ssl.SSLError("cadata bytes are not DER certificates")
        size, header = data[1], 2
        if size & 0x80:
            count = size & 0x7F
            size, header = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
        certs.append(x509.load_der_x509_certificate(data[: header + size]))
        data = data[header + size :]
    return certs


def load_trust(
    cafile: str | os.PathLike[str] | None,
    capath: str | os.PathLike[str] | None,
    cadata: str | bytes | None,
) -> list[Trust]:
    """``load_verify_locations``' arguments as trust entries, each checked now."""
    if cafile is None and capath is None and cadata is None:
        raise TypeError("cafile, capath and cadata cannot be all omitted")
    entries: list[Trust] = []
    if cafile is not None or capath is not None:
        cafile_s = os.fspath(cafile) if cafile is not None else None
        capath_s = os.fspath(capath) if capath is not None else None
        if cafile_s is not None and not os.path.exists(cafile_s):
            raise FileNotFoundError(2, "No such file or directory", cafile_s)
        try:
            SSL.Context(SSL.TLS_CLIENT_METHOD).load_verify_locations(cafile_s, capath_s)
        except SSL.Error as exc:
            where = cafile_s or capath_s
            raise ssl.SSLError(f"cannot load CA certificates from {where}: {exc}") from None
        entries.append(("file", cafile_s, capath_s))
    if cadata is not None:
        if isinstance(cadata, str):
            try:
                certs = x509.load_pem_x509_certificates(cadata.encode("ascii"))
            except ValueError:
                raise ssl.SSLError("no PEM certificate in cadata") from None
        else:
            certs = _der_certificates(bytes(cadata))
        entries.extend(("cert", cert) for cert in certs)
    return entries
