"""The only package that knows aioquic's internals (version-checked at import)."""

from .version import check_aioquic_version

check_aioquic_version()

from .context import PostQuantumContext  # noqa: E402
from .hook import (  # noqa: E402
    PostQuantumSettings,
    configure,
    install,
    installed,
    is_patched,
    negotiated_group,
    settings_of,
    uninstall,
)

__all__ = [
    "PostQuantumContext",
    "PostQuantumSettings",
    "configure",
    "install",
    "installed",
    "is_patched",
    "negotiated_group",
    "settings_of",
    "uninstall",
]
