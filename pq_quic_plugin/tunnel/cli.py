"""``pq-tunnel``: ``edge``, ``create``, ``list``, ``delete`` and ``run``.

Errors in configuration files are reported with file, line and key and exit with status 2,
like argparse does for bad flags; nothing starts half-configured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from .. import __version__
from .config.connector_edge import (
    ConfigError,
    ConnectorConfig,
    load_connector_config,
    load_edge_config,
)

logger = logging.getLogger("pq_quic_plugin.tunnel")
PROG = "pq-tunnel"


class _Formatter(logging.Formatter):
    """cloudflared-like lines: ``2026-11-28T10:00:00Z INF message``."""

    LEVELS = {"DEBUG": "DBG", "INFO": "INF", "WARNING": "WRN", "ERROR": "ERR", "CRITICAL": "ERR"}

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        text = (
            f"{stamp} {self.LEVELS.get(record.levelname, record.levelname)} {record.getMessage()}"
        )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("quic", "hypercorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------------- edge


def cmd_edge(args: argparse.Namespace) -> int:
    try:
        config = load_edge_config(args.config)
    except (ConfigError, OSError) as exc:
        return _fail(str(exc))
    setup_logging(args.loglevel or config.loglevel)
    from .edge.server import Edge
    from .ops.server import attach_edge_operations

    async def main() -> int:
        edge = Edge(config)
        attach_edge_operations(edge, config)
        edge.install_signal_handlers()
        return await edge.run()

    try:
        return asyncio.run(main())
    except OSError as exc:
        return _fail(f"cannot listen: {exc}")


# ---------------------------------------------------------------------------------- create


def _store_path(args: argparse.Namespace) -> Path:
    if args.store:
        return Path(args.store)
    if args.config:
        return load_edge_config(args.config).store
    return Path("tunnels.db")


def cmd_create(args: argparse.Namespace) -> int:
    from .credentials import write_credentials
    from .edge.store import StoreError, TunnelStore

    try:
        store_path = _store_path(args)
        with TunnelStore(store_path) as store:
            record, secret = store.create(args.name, args.hostname or [])
        creds = Path(args.credentials_file or f"{record.id}.json")
        write_credentials(creds, record.id, record.name, secret, overwrite=args.force)
    except (ConfigError, StoreError, OSError, ValueError) as exc:
        return _fail(str(exc))
    print(f"Created tunnel {record.name} with id {record.id}")
    print(f"Hostnames: {', '.join(record.hostnames) or '(none)'}")
    print(f"Tunnel store: {store_path}")
    print(f"Credentials written to {creds} (mode 0600; keep it secret, it is the tunnel's key)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .edge.store import StoreError, TunnelStore

    try:
        store_path = _store_path(args)
        with TunnelStore(store_path) as store:
            records = store.list()
    except (ConfigError, StoreError, OSError) as exc:
        return _fail(str(exc))
    live = _live_connections(store_path)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "name": r.name,
                        "hostnames": list(r.hostnames),
                        "connections": live.get(r.id, []),
                    }
                    for r in records
                ],
                indent=2,
            )
        )
        return 0
    if not records:
        print("No tunnels. Create one with: pq-tunnel create NAME --hostname HOST")
        return 0
    print(f"{'ID':<36}  {'NAME':<16}  {'HOSTNAMES':<30}  CONNECTIONS")
    for r in records:
        conns = live.get(r.id, [])
        desc = ", ".join(f"#{c['conn_index']} {c.get('group') or '?'}" for c in conns) or "-"
        print(f"{r.id:<36}  {r.name:<16}  {','.join(r.hostnames):<30}  {desc}")
    return 0


def _live_connections(store_path: Path) -> dict[str, list[dict[str, Any]]]:
    """The running edge writes its live connections next to the store (see ops.LiveFile)."""
    path = store_path.with_name(store_path.name + ".live.json")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if time.time() - float(data.get("updated", 0)) > 3600 * 24 * 365:
        return {}
    return {k: list(v) for k, v in data.get("tunnels", {}).items()}


def cmd_delete(args: argparse.Namespace) -> int:
    from .edge.store import StoreError, TunnelStore

    try:
        with TunnelStore(_store_path(args)) as store:
            record = store.delete(args.name)
    except (ConfigError, StoreError, OSError) as exc:
        return _fail(str(exc))
    print(f"Deleted tunnel {record.name} ({record.id})")
    return 0


# ---------------------------------------------------------------------------------- run


def build_connector_config(args: argparse.Namespace) -> ConnectorConfig:
    base = load_connector_config(args.config) if args.config else ConnectorConfig()
    config = base.with_overrides(
        tunnel=args.name,
        credentials_file=args.credentials_file,
        edge=args.edge,
        post_quantum=True if args.post_quantum else None,
        ha_connections=args.ha_connections,
        metrics=args.metrics,
        loglevel=args.loglevel,
        grace_period=args.grace_period,
        pq_report_url=args.pq_report_url,
        ca_file=args.ca_file,
        url=args.url,
    )
    config.check_runnable()
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from .connector.supervisor import Connector, ConnectorSettings
    from .credentials import CredentialsError, load_credentials
    from .origin.client import OriginClient

    try:
        config = build_connector_config(args)
        assert config.credentials_file is not None
        creds = load_credentials(config.credentials_file)
    except (ConfigError, CredentialsError, OSError, TypeError) as exc:
        return _fail(str(exc))
    if config.tunnel and config.tunnel not in (creds.tunnel_id, creds.tunnel_name):
        return _fail(
            f"the credentials file is for tunnel {creds.tunnel_name} "
            f"({creds.tunnel_id}), not {config.tunnel}"
        )
    setup_logging(config.loglevel)
    for warning in creds.warnings:
        logger.warning("%s", warning)
    hostnames = sorted({r.hostname for r in config.ingress if r.hostname})
    settings = ConnectorSettings(
        tunnel_id=creds.tunnel_id,
        tunnel_name=creds.tunnel_name,
        secret=creds.secret,
        edges=[(e.host, e.port) for e in config.edge],
        post_quantum=config.post_quantum,
        pq_groups=tuple(config.groups) if config.groups else ("X25519MLKEM768",),
        ha_connections=config.ha_connections,
        ca_file=str(config.ca_file) if config.ca_file else None,
        server_name=config.edge_server_name,
        pq_report_url=config.pq_report_url,
        grace_period=config.grace_period,
        hostnames=hostnames,
        retries=config.retries,
    )
    origin = OriginClient(policy="require" if config.post_quantum else "prefer")
    from .ops.server import attach_connector_operations

    async def main() -> int:
        connector = Connector(settings, config, origin)
        try:
            await attach_connector_operations(connector, config)
        except OSError as exc:
            return _fail(f"cannot serve metrics on {config.metrics}: {exc.strerror or exc}")
        connector.install_signal_handlers()
        return await connector.run()

    return asyncio.run(main())


# ---------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A post-quantum tunnel: an edge and a connector that carry HTTP from the "
        "public side to a private origin, every hop post-quantum.",
    )
    parser.add_argument("--version", action="version", version=f"pq-quic-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    edge = sub.add_parser("edge", help="run the edge (public listener + connector listener)")
    edge.add_argument("--config", required=True, help="edge.yaml")
    edge.add_argument("--loglevel", choices=["debug", "info", "warning", "error"])
    edge.set_defaults(func=cmd_edge)

    for name, func, text in [
        ("create", cmd_create, "create a tunnel and its credentials"),
        ("list", cmd_list, "list tunnels and their live connections"),
        ("delete", cmd_delete, "delete a tunnel"),
    ]:
        p = sub.add_parser(name, help=text)
        if name != "list":
            p.add_argument("name", help="tunnel name (or ID for delete)")
        p.add_argument("--config", help="edge.yaml (to find the tunnel store)")
        p.add_argument(
            "--store", help="the tunnel store (default: from --config, else ./tunnels.db)"
        )
        if name == "create":
            p.add_argument(
                "--hostname", action="append", help="a public hostname for this tunnel (repeatable)"
            )
            p.add_argument(
                "--credentials-file",
                help="where to write the credentials (default: ./TUNNEL_ID.json)",
            )
            p.add_argument("--force", action="store_true", help="overwrite the credentials file")
        if name == "list":
            p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)

    run = sub.add_parser("run", help="run a connector next to the origin")
    run.add_argument("name", nargs="?", help="tunnel name or ID (optional with credentials)")
    run.add_argument("--config", help="config.yml")
    run.add_argument(
        "--post-quantum",
        action="store_true",
        default=None,
        help="post-quantum key exchange only, never a classical fallback",
    )
    run.add_argument("--url", help="quick tunnel: send every request to this origin URL")
    run.add_argument("--credentials-file")
    run.add_argument("--edge", action="append", help="edge HOST:PORT (repeatable)")
    run.add_argument("--ha-connections", type=int)
    run.add_argument("--metrics", help="HOST:PORT for /metrics, /ready, /healthcheck")
    run.add_argument("--loglevel", choices=["debug", "info", "warning", "error"])
    run.add_argument("--grace-period", help="e.g. 30s")
    run.add_argument("--pq-report-url", help="where to POST post-quantum failure reports")
    run.add_argument("--ca-file", help="CA that issued the edge's certificate")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
