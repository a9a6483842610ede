"""Where ``pq-tunnel create`` puts credentials and ``pq-tunnel run NAME`` finds them.

cloudflared users expect ``tunnel create`` to write ``~/.cloudflared/UUID.json`` and ``tunnel
run NAME`` to find it with nothing else said; a credentials file dropped into whatever
directory ``create`` ran in was lost to ``run`` started anywhere else. The directory is
``~/.pq-tunnel`` (created 0700): the files are the tunnels' keys.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

__all__ = [
    "DIRECTORY",
    "CredentialsNotFoundError",
    "credentials_directory",
    "default_credentials_path",
    "find_credentials",
]

#: The directory's name in the home directory.
DIRECTORY = ".pq-tunnel"


class CredentialsNotFoundError(LookupError):
    """No credentials file (or more than one) for the tunnel in the directory."""


def credentials_directory() -> Path:
    """``~/.pq-tunnel`` (``$HOME`` decides where ``~`` is)."""
    return Path.home() / DIRECTORY


def default_credentials_path(tunnel_id: str) -> Path:
    """Where ``create`` writes a tunnel's credentials when not told; makes the directory 0700."""
    directory = credentials_directory()
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)  # the umask can only remove bits; be exact anyway
    return directory / f"{tunnel_id}.json"


def _names(path: Path) -> tuple[str, str] | None:
    """A credentials file's tunnel ID and name, or ``None`` if it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    tid, name = data.get("TunnelID"), data.get("TunnelName")
    if not isinstance(tid, str) or not isinstance(name, str):
        return None
    return tid.lower(), name


def find_credentials(tunnel: str, directory: Path | None = None) -> Path:
    """The credentials file in ``directory`` (default ``~/.pq-tunnel``) for ``tunnel``, a name
    or a UUID; :class:`CredentialsNotFoundError` says what was looked at and what to do."""
    directory = directory or credentials_directory()
    try:
        wanted_id: str | None = str(uuid.UUID(tunnel))
    except ValueError:
        wanted_id = None
    found = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        names = _names(path)
        if names is None:
            continue
        if (wanted_id is not None and names[0] == wanted_id) or names[1] == tunnel:
            found.append(path)
    if len(found) == 1:
        return found[0]
    if found:
        raise CredentialsNotFoundError(
            f"several credentials files in {directory} are for tunnel {tunnel!r} "
            f"({', '.join(p.name for p in found)}); say which with --credentials-file"
        )
    raise CredentialsNotFoundError(
        f"no credentials for tunnel {tunnel!r} in {directory} (pq-tunnel create writes them "
        "there); give the file with --credentials-file FILE"
    )
