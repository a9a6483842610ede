"""Write the key and flag reference of ``docs/tunnel-config.md`` from the field tables.

The reference used to be typed by hand and documented a flag that did not exist. Now each
table is rendered between a pair of marker comments, and the prose around the markers stays as
written. Run ``python -m pq_quic_plugin.tunnel.config.docs`` after changing a table (``--check``
only reports whether the file is up to date, for CI).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .fields import CONNECTOR_FIELDS, EDGE_FIELDS, TABLES
from .table import FieldTable

__all__ = ["begin_marker", "end_marker", "render", "sections", "update"]

#: The page in a source checkout (this file is pq_quic_plugin/tunnel/config/docs.py).
DEFAULT_PATH = Path(__file__).resolve().parents[3] / "docs" / "tunnel-config.md"
COMMAND = "python -m pq_quic_plugin.tunnel.config.docs"

#: The subcommand whose flags each table with flags declares.
FLAG_COMMANDS = {CONNECTOR_FIELDS.name: "pq-tunnel run", EDGE_FIELDS.name: "pq-tunnel edge"}


def begin_marker(name: str) -> str:
    return f"<!-- BEGIN GENERATED {name}: edit the field table, then run {COMMAND} -->"


def end_marker(name: str) -> str:
    return f"<!-- END GENERATED {name} -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def key_table(table: FieldTable) -> str:
    """Every YAML key of ``table``: key, type, default, meaning."""
    lines = [_row(["key", "type", "default", "meaning"]), _row(["---"] * 4)]
    for f in table.file_fields():
        lines.append(_row([f"`{f.key}`", f.kind.doc, f.shown_default(), f.doc]))
    return "\n".join(lines)


def flag_table(table: FieldTable) -> str:
    """Every flag of ``table``: the flag, the key it overrides, its help."""
    lines = [_row(["flag", "overrides", "meaning"]), _row(["---"] * 3)]
    for f in table.flagged():
        key = f"`{f.key}`" if f.key else "(no key)"
        lines.append(_row([f"`{f.flag_usage()}`", key, f.flag.help if f.flag else ""]))
    return "\n".join(lines)


def sources_table(table: FieldTable) -> str:
    """Every setting of ``table`` and the three places it can come from: the file's key, the
    flag and the environment variable (``-`` where there is none)."""
    lines = [_row(["key", "flag", "variable"]), _row(["---"] * 3)]
    for f in table.fields:
        if f.key is None and f.flag is None and f.env is None:
            continue
        lines.append(
            _row(
                [
                    f"`{f.key}`" if f.key else "(no key)",
                    f"`{f.flag_usage()}`" if f.flag else "-",
                    f"`{f.env}`" if f.env else "-",
                ]
            )
        )
    return "\n".join(lines)


def sections() -> dict[str, str]:
    """Marker name → generated Markdown, for every table (and its flags and their sources, if
    it has any)."""
    out: dict[str, str] = {}
    for table in TABLES:
        out[f"{table.name}-keys"] = key_table(table)
        if table.flagged():
            out[f"{table.name}-flags"] = flag_table(table)
            out[f"{table.name}-sources"] = sources_table(table)
    return out


def render(name: str) -> str:
    """One generated section with its markers, as it appears in the file."""
    return f"{begin_marker(name)}\n{sections()[name]}\n{end_marker(name)}"


def update(text: str) -> str:
    """``text`` with every generated section replaced; a missing marker is a ``ValueError``."""
    for name in sections():
        begin, end = begin_marker(name), end_marker(name)
        start = text.find(begin)
        stop = text.find(end, start)
        if start < 0 or stop < 0:
            raise ValueError(
                f"no {begin!r} ... {end!r} pair; add the two markers where the {name} "
                "reference belongs"
            )
        text = text[:start] + render(name) + text[stop + len(end) :]
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=DEFAULT_PATH,
        help=f"the Markdown file to update (default: {DEFAULT_PATH})",
    )
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if the file is out of date"
    )
    args = parser.parse_args(argv)
    try:
        old = args.path.read_text(encoding="utf-8")
        new = update(old)
    except (OSError, ValueError) as exc:
        print(f"{COMMAND}: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != old:
            print(f"{args.path} is out of date; run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    if new != old:
        args.path.write_text(new, encoding="utf-8")
        print(f"updated {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
