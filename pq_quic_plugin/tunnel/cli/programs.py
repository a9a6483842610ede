"""``pq-tunnel edge`` and ``pq-tunnel run``: the two long-running programs.

Errors in configuration files, flags or ``TUNNEL_*`` variables are reported with where they
came from and exit with status 2, like argparse does for bad flags; nothing starts
half-configured.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from ...h2_binding import apply as apply_h2_binding
from ..config import (
    CONNECTOR_FIELDS,
    EDGE_FIELDS,
    ConfigError,
    ConnectorConfig,
    FieldTable,
    load_connector_config,
    load_edge_config,
)
from ..logs import setup_logging
from ..profiling import profiled
from .common import fail

__all__ = ["build_connector_config", "cmd_edge", "cmd_run", "flag_values"]

logger = logging.getLogger("pq_quic_plugin.tunnel")


def flag_values(args: argparse.Namespace, table: FieldTable) -> dict[str, object]:
    """The flags of ``table`` as ``with_overrides`` keywords (``None``: not given)."""
    return {f.attr: getattr(args, f.attr) for f in table.flagged()}


def cmd_edge(args: argparse.Namespace) -> int:
    apply_h2_binding()  # cheap h2 frame reprs (docs/binding.md, "The h2 binding")
    try:
        config = load_edge_config(args.config).with_overrides(**flag_values(args, EDGE_FIELDS))
    except (ConfigError, OSError) as exc:
        return fail(str(exc))
    try:
        setup_logging(config.loglevel, config.logfile, config.log_format)
    except OSError as exc:
        return fail(f"logfile: cannot open {config.logfile}: {exc.strerror or exc}")
    from ..edge.server import Edge
    from ..edge.store import StoreError
    from ..ops.metrics import Metrics
    from ..ops.server import serve_edge_operations

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
        with profiled("edge"):
            return asyncio.run(main())
    except StoreError as exc:  # the store cannot be reached or refuses us: it says which
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot listen: {exc}")


def build_connector_config(args: argparse.Namespace) -> ConnectorConfig:
    """The file (if ``--config``), then ``TUNNEL_*`` variables, then the flags given: each
    replaces what the one before said (flag > variable > file), ready to run."""
    base = load_connector_config(args.config) if args.config else ConnectorConfig()
    config = base.with_overrides(environ=os.environ, **flag_values(args, CONNECTOR_FIELDS))
    config.check_runnable()
    return config


def cmd_run(args: argparse.Namespace) -> int:
    apply_h2_binding()  # cheap h2 frame reprs (docs/binding.md, "The h2 binding")
    from ..connector import Connector
    from ..credentials import CredentialsError, load_credentials
    from ..credentials_home import CredentialsNotFoundError, find_credentials
    from ..ops.metrics import Metrics
    from ..ops.server import serve_connector_operations
    from ..origin import OriginClient

    try:
        config = build_connector_config(args)
        if config.credentials_file is None:
            assert config.tunnel is not None  # check_runnable: one of the two is given
            path = find_credentials(config.tunnel)
        else:
            path = config.credentials_file
        creds = load_credentials(path)
    except (ConfigError, CredentialsError, CredentialsNotFoundError, OSError, TypeError) as exc:
        return fail(str(exc))
    if config.tunnel and config.tunnel not in (creds.tunnel_id, creds.tunnel_name):
        return fail(
            f"the credentials file {path} is for tunnel {creds.tunnel_name} "
            f"({creds.tunnel_id}), not {config.tunnel}"
        )
    try:
        setup_logging(config.loglevel, config.logfile, config.log_format)
    except OSError as exc:
        return fail(f"logfile: cannot open {config.logfile}: {exc.strerror or exc}")
    for warning in creds.warnings:
        logger.warning("%s", warning)
    logger.info("Using credentials file %s", path)
    origin = OriginClient(policy="require" if config.post_quantum else "prefer")

    async def main() -> int:
        metrics = Metrics("connector")
        connector = Connector(config, creds, origin, observer=metrics)
        try:
            ops = await serve_connector_operations(connector, metrics, config.metrics)
        except OSError as exc:
            return fail(f"cannot serve metrics on {config.metrics}: {exc.strerror or exc}")
        connector.install_signal_handlers()
        try:
            return await connector.run()
        finally:
            await ops.stop()

    with profiled("connector"):
        return asyncio.run(main())
