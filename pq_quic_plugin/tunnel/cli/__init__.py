"""``pq-tunnel``: ``edge``, ``create``, ``route``, ``list``, ``info``, ``delete`` and ``run``.

``parser.py`` declares the commands and their help, ``programs.py`` runs the edge and the
connector, ``tunnels.py`` changes the tunnel store and ``show.py`` reads it.
"""

from __future__ import annotations

import sys

from .common import PROG
from .parser import add_table_flags, build_parser
from .programs import build_connector_config, flag_values

__all__ = [
    "PROG",
    "add_table_flags",
    "build_connector_config",
    "build_parser",
    "flag_values",
    "main",
]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
