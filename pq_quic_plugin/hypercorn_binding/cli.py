"""``hypercorn-pq``: hypercorn's own command line plus ``--pq``, ``--pq-groups``,
``--pq-trust-hops-from``, ``--pq-handshake-timeout`` and the authentication options
``--pq-auth``, ``--pq-certfile`` and ``--pq-keyfile``.

hypercorn builds its argparse parser inside ``hypercorn.__main__.main`` and offers no way to
extend it, and its option list must not be copied (it changes between releases). So this runs
hypercorn's real ``main`` with two of its module globals swapped for the duration of the call:

* ``argparse``, so the parser hypercorn builds is a subclass that adds our options (they
  appear in ``--help`` next to hypercorn's own), and
* ``run``, so the ``Config`` hypercorn assembled passes through :func:`_prepare` before
  hypercorn's real ``run`` starts the workers.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import types
from collections.abc import Sequence
from typing import Any

import hypercorn.__main__ as hypercorn_main
from hypercorn.config import Config

from ..aioquic_binding.handshake_deadline import DEFAULT_HANDSHAKE_TIMEOUT, check_timeout
from ..asgi.hop_trust import LOOPBACK
from ..auth_policy import AuthPolicy
from ..plugins import UnknownGroupError, registry
from ..policy import GroupPolicy, Policy
from .auth import NEEDS_PQ, auth_needs_pq, check_auth
from .config import PostQuantumConfig, normalise_groups, normalise_trusted
from .tcp import check_tcp

PROG = "hypercorn-pq"
_POLICIES = ("off", "prefer", "require")


class _State:
    parser: argparse.ArgumentParser | None = None
    args: argparse.Namespace | None = None


class _PostQuantumParser(argparse.ArgumentParser):
    """hypercorn's parser, with the post-quantum options added just before parsing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prog", PROG)
        kwargs.setdefault(
            "description",
            "hypercorn with post-quantum key exchange (X25519MLKEM768) for HTTP/3 and TLS "
            "over TCP. "
            "Every hypercorn option works unchanged.",
        )
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        group = self.add_argument_group("post-quantum (pq-quic-plugin)")
        group.add_argument(
            "--pq",
            nargs="?",
            const="prefer",
            default=None,
            choices=_POLICIES,
            metavar="{prefer,require}",
            help="Serve HTTP/3 and TLS over TCP (HTTP/1.1, HTTP/2, WebSockets) with "
            "post-quantum key exchange. 'prefer' (the default when the flag has no value) "
            "negotiates X25519MLKEM768 when the client can and classical otherwise; 'require' "
            "refuses classical handshakes on both (TLS 1.3 only over TCP), and answers requests "
            "on a plaintext --insecure-bind with an explanation. Needs --certfile/--keyfile. "
            "Without --quic-bind, HTTP/3 listens on the TCP bind's port.",
        )
        names = ",".join(g.name for g in registry())
        group.add_argument(
            "--pq-groups",
            default=None,
            metavar="NAME,NAME",
            help="Key-exchange groups the server accepts, most preferred first, on both "
            "listeners (QUIC-only groups are left out over TCP, with a warning). "
            f"Known: {names}",
        )
        group.add_argument(
            "--pq-trust-hops-from",
            default=None,
            metavar="ADDR,ADDR",
            help="Addresses or networks (e.g. 10.0.0.5,10.1.0.0/16) of the pq-tunnel connectors "
            "whose pq-tunnel-hops header is believed under --pq require; a hop list from "
            "anyone else is refused with 403. Default: loopback (127.0.0.1, ::1).",
        )
        group.add_argument(
            "--pq-handshake-timeout",
            default=None,
            metavar="SECONDS",
            help="Close an HTTP/3 connection whose handshake is not complete this many seconds "
            f"after its first packet (default {DEFAULT_HANDSHAKE_TIMEOUT:g}; 0: only the idle "
            "timeout), so clients that start handshakes and go silent cannot pile them up.",
        )
        group.add_argument(
            "--pq-auth",
            default=None,
            choices=_POLICIES,
            help="Post-quantum authentication (ML-DSA certificates) on both listeners: "
            "'prefer' (default) signs with the ML-DSA certificate when the client offers ML-DSA "
            "and with the classical one otherwise; 'require' refuses clients that cannot verify "
            "ML-DSA; 'off' never uses an ML-DSA certificate. Needs --pq.",
        )
        group.add_argument(
            "--pq-certfile",
            default=None,
            metavar="FILE",
            help="A second certificate (PEM, leaf first), typically ML-DSA, served next to "
            "--certfile: each client gets the one it can verify. Make a test one with: "
            "python -m pq_quic_plugin.devcert DIR --sig ml-dsa-65",
        )
        group.add_argument(
            "--pq-keyfile",
            default=None,
            metavar="FILE",
            help="The private key of --pq-certfile (default: read from --pq-certfile).",
        )
        ns = super().parse_args(args, namespace)
        _State.parser, _State.args = self, ns
        return ns


def _normalise_argv(argv: Sequence[str]) -> list[str]:
    """Let a bare ``--pq`` stand before the application name.

    ``--pq app:app`` would otherwise make argparse take ``app:app`` as the policy.
    """
    out: list[str] = []
    items = list(argv)
    for i, item in enumerate(items):
        if item == "--pq":
            nxt = items[i + 1] if i + 1 < len(items) else None
            if nxt is None or nxt.lower() not in _POLICIES:
                out.append("--pq=prefer")
                continue
        if i > 0 and items[i - 1] == "--pq" and item.lower() in _POLICIES:
            out[-1] = f"--pq={item.lower()}"
            continue
        out.append(item)
    return out


def _fail(message: str) -> None:
    parser = _State.parser
    if parser is not None:
        parser.error(message)  # exits 2 with the usage line
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _prepare(config: Config) -> PostQuantumConfig:
    """Merge command line and config-file settings, check them, derive the QUIC bind."""
    args = _State.args
    cli_policy = getattr(args, "pq", None)
    cli_groups = getattr(args, "pq_groups", None)
    try:
        policy = Policy.parse(
            cli_policy if cli_policy is not None else getattr(config, "pq", "off")
        )
    except ValueError as exc:
        _fail(f"config key 'pq': {exc}")
        raise
    try:
        groups = normalise_groups(
            cli_groups if cli_groups is not None else getattr(config, "pq_groups", None)
        )
    except UnknownGroupError as exc:
        source = "--pq-groups" if cli_groups is not None else "config key 'pq_groups'"
        _fail(f"{source}: {exc}")
        raise

    cli_trusted = getattr(args, "pq_trust_hops_from", None)
    try:
        trusted = normalise_trusted(
            cli_trusted if cli_trusted is not None else getattr(config, "pq_trust_hops_from", None)
        )
    except ValueError as exc:
        source = "--pq-trust-hops-from" if cli_trusted is not None else "config key"
        _fail(f"{source}: {exc}")
        raise

    pq_config = PostQuantumConfig.from_config(config)
    pq_config.pq_h2_binding = True  # every worker: cheap h2 frame reprs (docs/binding.md)
    pq_config.pq = policy.value
    pq_config.pq_groups = groups
    pq_config.pq_trust_hops_from = trusted
    cli_timeout = getattr(args, "pq_handshake_timeout", None)
    try:
        pq_config.pq_handshake_timeout = check_timeout(
            cli_timeout if cli_timeout is not None else pq_config.pq_handshake_timeout
        )
    except ValueError as exc:
        where = "--pq-handshake-timeout" if cli_timeout is not None else "pq_handshake_timeout"
        _fail(f"{where}: {exc}")
    _merge_auth(pq_config, args)
    if policy is Policy.OFF:
        if auth_needs_pq(pq_config):
            _fail(NEEDS_PQ)
        _say(
            "post-quantum off: HTTP/3 (if configured) runs stock aioquic key exchange and TCP "
            "runs Python's ssl; add --pq"
        )
        return pq_config

    if not config.certfile or not config.keyfile:
        _fail(
            "--pq needs --certfile and --keyfile. QUIC always runs TLS 1.3 (there is no "
            "plaintext QUIC), so HTTP/3 and its post-quantum key exchange need a certificate. "
            "For local testing, make one with: python -m pq_quic_plugin.devcert ./certs"
        )
    try:
        server = GroupPolicy.server_default(policy, groups)
    except ValueError as exc:
        _fail(str(exc))
        raise
    try:
        tcp = check_tcp(policy, groups)
    except (ValueError, ImportError) as exc:
        _fail(f"the TCP listener (TLS via OpenSSL) cannot serve this: {exc}")
        raise
    if not config.quic_bind:
        derived = [b for b in config.bind if not b.startswith(("unix:", "fd://"))]
        if not derived:
            _fail("--pq needs a UDP address for HTTP/3: add --quic-bind HOST:PORT")
        pq_config.quic_bind = derived
        _say(
            f"HTTP/3 (QUIC) on udp {', '.join(derived)}, the same port as the TCP bind "
            "(use --quic-bind to choose another)"
        )
    if pq_config.ssl_enabled:
        try:
            _say(f"post-quantum {check_auth(pq_config)} (HTTP/3 and TCP)")
        except (ValueError, OSError, ssl.SSLError) as exc:
            _fail(f"authentication: {exc}")
    _say(f"post-quantum HTTP/3: {server.describe()}")
    _say(f"post-quantum TCP (HTTP/1.1, HTTP/2, WebSockets): {tcp.describe()}")
    if policy is Policy.REQUIRE:
        _say(
            "policy require: classical handshakes are refused on QUIC and on TCP (TLS 1.3 with a "
            "post-quantum group only); requests on a plaintext --insecure-bind get an "
            "explanation page, never the application's response; a pq-tunnel hop list is "
            f"believed from {', '.join(trusted or LOOPBACK)} only"
        )
    return pq_config


def _merge_auth(config: PostQuantumConfig, args: argparse.Namespace | None) -> None:
    """Command-line authentication options over the config file's ``pq_auth``/``pq_certfile``/
    ``pq_keyfile`` keys."""
    for key in ("pq_auth", "pq_certfile", "pq_keyfile"):
        value = getattr(args, key, None)
        if value is not None:
            setattr(config, key, value)
    try:
        if config.pq_auth is not None:
            config.pq_auth = AuthPolicy.parse(config.pq_auth).value
    except ValueError as exc:
        _fail(f"pq_auth: {exc}")
    if config.pq_keyfile and not config.pq_certfile:
        _fail("--pq-keyfile needs --pq-certfile")


def main(argv: Sequence[str] | None = None) -> int:
    argv = _normalise_argv(sys.argv[1:] if argv is None else argv)
    shim = types.ModuleType("argparse")
    shim.__dict__.update(argparse.__dict__)
    shim.ArgumentParser = _PostQuantumParser  # type: ignore[attr-defined]
    real_run = hypercorn_main.run

    def run(config: Config) -> int:
        return real_run(_prepare(config))

    saved = hypercorn_main.argparse, hypercorn_main.run
    hypercorn_main.argparse = shim
    hypercorn_main.run = run
    try:
        return hypercorn_main.main(argv)
    finally:
        hypercorn_main.argparse, hypercorn_main.run = saved
