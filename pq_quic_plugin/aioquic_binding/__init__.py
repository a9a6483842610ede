"""The only package that knows aioquic's internals.

Every private aioquic name the project uses is here, listed in
:data:`.version.REQUIRED_INTERNALS` and checked (with the aioquic release) before anything else
is imported; other packages use :mod:`.facade` and :mod:`.flow_control`.
"""

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
