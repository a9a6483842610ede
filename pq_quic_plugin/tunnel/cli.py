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

from .. import __version__
from .config import (
    CONNECTOR_FIELDS,
    EDGE_FIELDS,
    ConfigError,
    ConnectorConfig,
    FieldTable,
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
        config = load_edge_config(args.config).with_overrides(**flag_values(args, EDGE_FIELDS))
    except (ConfigError, OSError) as exc:
        return _fail(str(exc))
    setup_logging(config.loglevel)
    from .edge.server import Edge
    from .ops.metrics import Metrics
    from .ops.server import serve_edge_operations

    async def main() -> int:
        metrics = Metrics("edge")
        edge = Edge(config, observer=metrics)
        await edge.start()
        ops = await serve_edge_operations(edge, metrics, config.metrics)
        edge.install_signal_handlers()
        try:
            return await edge.serve()
        finally:
            await ops.stop()

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
    from .edge.live_file import read_live_connections
    from .edge.store import StoreError, TunnelStore

    try:
        store_path = _store_path(args)
        with TunnelStore(store_path) as store:
            records = store.list()
    except (ConfigError, StoreError, OSError) as exc:
        return _fail(str(exc))
    live = read_live_connections(store_path)
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


#: How long ``delete --force`` waits to see the edge close the deleted tunnel's connections
#: (the edge looks at the store every second).
DELETE_WAIT = 10.0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a tunnel; one with live connections only with ``--force``, because deleting it
    cuts off its connectors (the running edge sees the deletion and closes them)."""
    from .edge.live_file import read_live_connections
    from .edge.store import StoreError, TunnelStore

    try:
        store_path = _store_path(args)
        with TunnelStore(store_path) as store:
            found = store.get(args.name)
            if found is None:
                store.delete(args.name)  # raises, naming the tunnels there are
                return 2
            live = read_live_connections(store_path).get(found.id, [])
            if live and not args.force:
                return _fail(
                    f"tunnel {found.name} has {len(live)} live connection(s); stop its "
                    "connectors first, or pass --force to delete it and close them"
                )
            record = store.delete(found.id)
    except (ConfigError, StoreError, OSError) as exc:
        return _fail(str(exc))
    print(f"Deleted tunnel {record.name} ({record.id})")
    if live:
        deadline = time.monotonic() + DELETE_WAIT
        while read_live_connections(store_path).get(record.id) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = len(read_live_connections(store_path).get(record.id, []))
        if left:
            print(f"{left} connection(s) still live: is the edge running?", file=sys.stderr)
        else:
            print(f"The edge closed its {len(live)} live connection(s) (reason: tunnel deleted)")
    return 0


# ---------------------------------------------------------------------------------- run


def build_connector_config(args: argparse.Namespace) -> ConnectorConfig:
    """The file (if ``--config``) with every flag given on top, ready to run."""
    base = load_connector_config(args.config) if args.config else ConnectorConfig()
    config = base.with_overrides(**flag_values(args, CONNECTOR_FIELDS))
    config.check_runnable()
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from .connector import Connector
    from .credentials import CredentialsError, load_credentials
    from .ops.metrics import Metrics
    from .ops.server import serve_connector_operations
    from .origin import OriginClient

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
    origin = OriginClient(policy="require" if config.post_quantum else "prefer")

    async def main() -> int:
        metrics = Metrics("connector")
        connector = Connector(config, creds, origin, observer=metrics)
        try:
            ops = await serve_connector_operations(connector, metrics, config.metrics)
        except OSError as exc:
            return _fail(f"cannot serve metrics on {config.metrics}: {exc.strerror or exc}")
        connector.install_signal_handlers()
        try:
            return await connector.run()
        finally:
            await ops.stop()

    return asyncio.run(main())


# ---------------------------------------------------------------------------------- parser


def add_table_flags(parser: argparse.ArgumentParser, table: FieldTable) -> None:
    """One argparse argument per field of ``table`` that has a flag.

    The flag's spelling, placeholder and help, and how its value is taken (repeatable, a
    switch, a fixed choice) come from the table, so ``--help``, the docs and what
    ``with_overrides`` accepts cannot drift apart. Values are validated by the table's rules
    (not by argparse ``type=``), so a bad flag fails with the same words as a bad key.
    """
    for f in table.flagged():
        assert f.flag is not None
        kind = f.kind
        if f.flag.positional:
            parser.add_argument(f.attr, metavar=f.flag.name, nargs="?", help=f.flag.help)
        elif kind.action == "store_true":
            parser.add_argument(
                f.flag.name, dest=f.attr, action="store_true", default=None, help=f.flag.help
            )
        elif kind.choices is not None:
            parser.add_argument(
                f.flag.name,
                dest=f.attr,
                action=kind.action,
                choices=kind.choices,
                help=f.flag.help,
            )
        else:
            parser.add_argument(
                f.flag.name,
                dest=f.attr,
                action=kind.action,
                metavar=f.flag.metavar or kind.metavar,
                help=f.flag.help,
            )


def flag_values(args: argparse.Namespace, table: FieldTable) -> dict[str, object]:
    """The flags of ``table`` as ``with_overrides`` keywords (``None``: not given)."""
    return {f.attr: getattr(args, f.attr) for f in table.flagged()}


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="edge.yaml (to find the tunnel store)")
    parser.add_argument(
        "--store",
        metavar="FILE",
        help="the tunnel store (default: from --config, else ./tunnels.db)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A post-quantum tunnel: an edge and a connector that carry HTTP from the "
        "public side to a private origin, every hop post-quantum.",
    )
    parser.add_argument("--version", action="version", version=f"pq-quic-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    edge = sub.add_parser("edge", help="run the edge (public listener + connector listener)")
    edge.add_argument("--config", required=True, metavar="FILE", help="the edge's edge.yaml")
    add_table_flags(edge, EDGE_FIELDS)
    edge.set_defaults(func=cmd_edge)

    create = sub.add_parser("create", help="create a tunnel and its credentials")
    create.add_argument("name", help="a name for the new tunnel")
    _add_store_options(create)
    create.add_argument(
        "--hostname",
        action="append",
        metavar="HOST",
        help="a public hostname for this tunnel (repeatable)",
    )
    create.add_argument(
        "--credentials-file",
        metavar="FILE",
        help="where to write the credentials (default: ./TUNNEL_ID.json)",
    )
    create.add_argument("--force", action="store_true", help="overwrite the credentials file")
    create.set_defaults(func=cmd_create)

    listing = sub.add_parser("list", help="list tunnels and their live connections")
    _add_store_options(listing)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=cmd_list)

    delete = sub.add_parser("delete", help="delete a tunnel")
    delete.add_argument("name", help="the tunnel's name or ID")
    _add_store_options(delete)
    delete.add_argument(
        "--force",
        action="store_true",
        help="delete even with live connections; the edge closes them (reason: tunnel deleted)",
    )
    delete.set_defaults(func=cmd_delete)

    run = sub.add_parser("run", help="run a connector next to the origin")
    run.add_argument("--config", metavar="FILE", help="the connector's config.yml")
    add_table_flags(run, CONNECTOR_FIELDS)
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
