"""``TUNNEL_*`` environment variables: every connector flag can also come from the environment.

Containers and service managers configure programs through the environment, and cloudflared
users already set ``TUNNEL_POST_QUANTUM`` and friends. Each field declares its variable in the
field table (``ConfigField.env``, cloudflared's name where it has one); this module turns the
variables' text into what the flag would have given, and ``with_overrides`` checks it with the
same rules, naming the variable in errors. Precedence: a flag beats a variable, which beats the
file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigError
from .table import ConfigField, FieldTable, convert_overrides

__all__ = ["BOOLEAN_WORDS", "environment_changes"]

#: What a variable may say for a switch, any case (cloudflared takes Go's ParseBool words).
BOOLEAN_WORDS = {
    **dict.fromkeys(("true", "t", "1", "yes", "y", "on"), True),
    **dict.fromkeys(("false", "f", "0", "no", "n", "off"), False),
}


def _variable(f: ConfigField) -> str:
    assert f.env is not None
    return f.env


def _as_flag(f: ConfigField, text: str) -> Any:
    """The variable's text in the form argparse would give the flag: a switch's bool, a
    repeatable flag's list (comma-separated in the variable), else the text itself."""
    if f.kind.action == "store_true":
        word = text.strip().lower()
        if word not in BOOLEAN_WORDS:
            raise ConfigError(
                f"{f.env}: expected true or false (or 1/0, yes/no, on/off), got {text!r}",
                key=f.env,
            )
        return BOOLEAN_WORDS[word]
    if f.kind.action == "append":
        return [part.strip() for part in text.split(",") if part.strip()]
    return text.strip()


def environment_changes(table: FieldTable, environ: Mapping[str, str]) -> dict[str, Any]:
    """The values ``environ`` gives for ``table``'s fields, checked, by attribute.

    A variable that is unset or empty is not given (``TUNNEL_URL=`` does not override the
    file); a bad value is a :class:`ConfigError` that names the variable.
    """
    given: dict[str, Any] = {}
    for f in table.from_environment():
        text = environ.get(_variable(f))
        if text is None or not text.strip():
            continue
        given[f.attr] = _as_flag(f, text)
    return convert_overrides(table, given, name=_variable)
