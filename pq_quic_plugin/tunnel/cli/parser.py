"""``pq-tunnel``'s argparse: every subcommand with a description, every option with help, and
examples in each ``--help``.

The run and edge options come from the field tables (``config/fields.py``), so ``--help``,
``docs/tunnel-config.md`` and what ``with_overrides`` accepts cannot drift apart; the store
commands' few options are declared here.
"""

from __future__ import annotations

import argparse
from typing import Any

from ... import __version__
from ..config import CONNECTOR_FIELDS, EDGE_FIELDS, FieldTable
from .common import PROG
from .programs import cmd_edge, cmd_run
from .show import cmd_info, cmd_list
from .tunnels import cmd_create, cmd_delete, cmd_route

__all__ = ["add_table_flags", "build_parser"]

_STORE_NOTE = (
    "The tunnel store is the edge's: name its edge.yaml with --config (or the store itself "
    "with --store)."
)

#: Per subcommand: its one-line help, its description, and the examples of its epilog.
COMMANDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "edge": (
        "run the edge: the public listener and the connectors' listener",
        "Run the edge: visitors connect to its public listener (HTTP/3 on UDP, HTTP/1.1 and "
        "HTTP/2 on TCP, one port) and connectors to its QUIC listener; requests for a "
        "tunnel's hostnames go down that tunnel's connections. Runs until SIGTERM/SIGINT "
        "(the first drains within grace-period). An ML-DSA certificate next to the classical "
        "one (pq-certfile and pq-keyfile in edge.yaml's listener sections) authenticates the "
        "edge post-quantum to visitors and connectors that offer ML-DSA (docs/auth.md).",
        (
            "pq-tunnel edge --config edge.yaml",
            "pq-tunnel edge --config edge.yaml --loglevel debug --log-format json",
        ),
    ),
    "create": (
        "create a tunnel and write its credentials",
        "Create a tunnel in the edge's store: a new UUID and secret, and the hostnames the "
        "edge will route to it. The credentials (the secret) go to ~/.pq-tunnel/UUID.json "
        "(mode 0600), where `pq-tunnel run NAME` finds them, unless --credentials-file says "
        f"otherwise. {_STORE_NOTE}",
        (
            "pq-tunnel create demo --hostname app.example.com --config edge.yaml",
            "pq-tunnel create web --hostname a.example.com --hostname '*.b.example.com' "
            "--config edge.yaml --credentials-file web.json",
        ),
    ),
    "route": (
        "add or remove a tunnel's hostnames (the running edge follows at once)",
        "Add or remove public hostnames of a tunnel. The running edge routes every request "
        "by the store, so the change applies without a restart, and within a second it "
        "tells the tunnel's connectors which hostnames they now serve. A hostname belongs "
        f"to one tunnel at a time. {_STORE_NOTE}",
        (
            "pq-tunnel route demo --add-hostname api.example.com --config edge.yaml",
            "pq-tunnel route demo --remove-hostname old.example.com --config edge.yaml",
        ),
    ),
    "list": (
        "list tunnels, when they were created and their live connections",
        "List every tunnel in the store: ID, name, creation time (UTC), hostnames and the "
        "live connections of the running edge (each with its key-exchange group). "
        f"Connections of an edge that is no longer running are not shown. {_STORE_NOTE}",
        ("pq-tunnel list --config edge.yaml", "pq-tunnel list --config edge.yaml --json"),
    ),
    "info": (
        "show one tunnel: its connectors, connections, edge, groups, protocol, versions",
        "Show one tunnel: its hostnames, the running edge, and each connector (version, "
        "address) with its connections (edge, protocol, key-exchange group, since when, "
        f"requests). {_STORE_NOTE}",
        ("pq-tunnel info demo --config edge.yaml", "pq-tunnel info demo --config edge.yaml --json"),
    ),
    "delete": (
        "delete a tunnel (one with live connections only with --force)",
        "Delete a tunnel and its hostnames. A tunnel with live connections is refused unless "
        "--force is given; then the running edge closes them (reason: tunnel deleted) and "
        f"its connectors stop. {_STORE_NOTE}",
        (
            "pq-tunnel delete demo --config edge.yaml",
            "pq-tunnel delete demo --config edge.yaml --force",
        ),
    ),
    "run": (
        "run a connector next to the origin",
        "Run a connector: it keeps ha-connections QUIC connections open to the edge, "
        "registers the tunnel on each, and sends each request it receives to the origin its "
        "ingress rules (or --url) name. Settings come from --config config.yml, then TUNNEL_* "
        "environment variables, then flags: a flag beats a variable, which beats the file "
        "(docs/tunnel-config.md lists them all). Without --credentials-file, the credentials "
        "of tunnel NAME are looked up in ~/.pq-tunnel, where `pq-tunnel create` writes them.",
        (
            "pq-tunnel run --config config.yml",
            "pq-tunnel run --post-quantum --url http://127.0.0.1:8000 --edge edge.example.com:7844 "
            "demo",
            "pq-tunnel run --url https://127.0.0.1:8000 --origin-ca-file certs/ca.pem "
            "--edge 127.0.0.1:7844 --ca-file certs/ca.pem demo",
            "TUNNEL_POST_QUANTUM=true TUNNEL_LOG_FORMAT=json pq-tunnel run --config config.yml",
        ),
    ),
}


def _subcommand(sub: Any, name: str, func: Any) -> argparse.ArgumentParser:
    short, description, examples = COMMANDS[name]
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=short,
        description=description,
        epilog=epilog,
        formatter_class=sub.formatter_class,
    )
    parser.set_defaults(func=func)
    return parser


def add_table_flags(parser: argparse.ArgumentParser, table: FieldTable) -> None:
    """One argparse argument per field of ``table`` that has a flag.

    The flag's spelling, placeholder and help, and how its value is taken (repeatable, a
    switch, a fixed choice) come from the table; the help names the field's environment
    variable when it has one. Values are validated by the table's rules (not by argparse
    ``type=``), so a bad flag fails with the same words as a bad key.
    """
    for f in table.flagged():
        assert f.flag is not None
        kind = f.kind
        text = f.flag.help + (f" [env: {f.env}]" if f.env else "")
        if f.flag.positional:
            parser.add_argument(f.attr, metavar=f.flag.name, nargs="?", help=text)
        elif kind.action == "store_true":
            parser.add_argument(
                f.flag.name, dest=f.attr, action="store_true", default=None, help=text
            )
        elif kind.choices is not None:
            parser.add_argument(
                f.flag.name, dest=f.attr, action=kind.action, choices=kind.choices, help=text
            )
        else:
            parser.add_argument(
                f.flag.name,
                dest=f.attr,
                action=kind.action,
                metavar=f.flag.metavar or kind.metavar,
                help=text,
            )


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="the edge's edge.yaml, whose `store` key names the store"
    )
    parser.add_argument(
        "--store",
        metavar="FILE|URL",
        help="the tunnel store itself: a SQLite file or a redis:// URL (default: from "
        "--config, else ./tunnels.db)",
    )


def _name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the tunnel's name or ID")


def _json(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def _hostnames(parser: argparse.ArgumentParser, flag: str, what: str) -> None:
    """A repeatable ``HOST`` flag: ``create`` and ``route`` take any number of hostnames."""
    parser.add_argument(flag, action="append", metavar="HOST", help=f"{what} (repeatable)")


def _force(parser: argparse.ArgumentParser, what: str) -> None:
    """``--force``: what it overrides differs by command, so ``what`` says it."""
    parser.add_argument("--force", action="store_true", help=what)


def build_parser(
    formatter_class: type[argparse.HelpFormatter] = argparse.RawDescriptionHelpFormatter,
) -> argparse.ArgumentParser:
    """The ``pq-tunnel`` parser; ``formatter_class`` formats every ``--help`` (the default
    keeps the examples' lines as written)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A post-quantum tunnel: an edge and a connector that carry HTTP from the "
        "public side to a private origin, every hop post-quantum.",
        epilog="Run `pq-tunnel COMMAND --help` for a command's options and examples; "
        "docs/tunnel.md has a quick start.",
        formatter_class=formatter_class,
    )
    parser.add_argument("--version", action="version", version=f"pq-quic-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, help="the command to run")
    sub.formatter_class = formatter_class  # type: ignore[attr-defined]

    edge = _subcommand(sub, "edge", cmd_edge)
    edge.add_argument("--config", required=True, metavar="FILE", help="the edge's edge.yaml")
    add_table_flags(edge, EDGE_FIELDS)

    create = _subcommand(sub, "create", cmd_create)
    create.add_argument("name", metavar="NAME", help="a name for the new tunnel")
    _store_options(create)
    _hostnames(create, "--hostname", "a public hostname for this tunnel, maybe *.domain")
    create.add_argument(
        "--credentials-file",
        metavar="FILE",
        help="where to write the credentials (default: ~/.pq-tunnel/TUNNEL_ID.json)",
    )
    _force(create, "overwrite an existing credentials file")

    route = _subcommand(sub, "route", cmd_route)
    _name(route)
    _store_options(route)
    _hostnames(route, "--add-hostname", "route this hostname (maybe *.domain) to the tunnel")
    _hostnames(route, "--remove-hostname", "stop routing this hostname to the tunnel")

    listing = _subcommand(sub, "list", cmd_list)
    _store_options(listing)
    _json(listing, "the tunnels")

    info = _subcommand(sub, "info", cmd_info)
    _name(info)
    _store_options(info)
    _json(info, "the tunnel and its connections")

    delete = _subcommand(sub, "delete", cmd_delete)
    _name(delete)
    _store_options(delete)
    _force(
        delete, "delete even with live connections; the edge closes them (reason: tunnel deleted)"
    )

    run = _subcommand(sub, "run", cmd_run)
    run.add_argument(
        "--config", metavar="FILE", help="the connector's config.yml (optional with --url)"
    )
    add_table_flags(run, CONNECTOR_FIELDS)
    return parser
