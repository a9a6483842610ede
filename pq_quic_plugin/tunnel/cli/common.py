"""What every ``pq-tunnel`` subcommand shares: how it fails and where the tunnel store is."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import load_edge_config
from ..config.store_url import RedisURL, StoreValue

__all__ = ["PROG", "fail", "store_path"]

PROG = "pq-tunnel"


def fail(message: str) -> int:
    """Print ``pq-tunnel: error: MESSAGE`` as argparse does and return its status, 2."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def store_path(args: argparse.Namespace) -> Path | RedisURL:
    """``--store`` (a file or a ``redis://`` URL), else the store ``--config edge.yaml``
    names, else ``./tunnels.db``."""
    if args.store:
        return StoreValue().convert(args.store)
    if args.config:
        return load_edge_config(args.config).store
    return Path("tunnels.db")
