"""The edge's ML-DSA certificate pairs (``pq-certfile``/``pq-keyfile``): the rules a table
cannot say.

Each listener may hold an ML-DSA pair next to its classical one, so that a peer offering ML-DSA
gets post-quantum authentication and every other peer still gets the ECDSA certificate
(docs/auth.md). The rules mirror the classical pair's: both keys or neither; the connectors'
listener reuses the public ML-DSA pair when its section gives no certificate of its own (a
section with its own ``certfile`` is a separate identity, so it does not inherit an ML-DSA
one); and ML-DSA runs in the post-quantum TLS engines only, so ``post-quantum: off`` cannot
take one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...policy import Policy
from .yaml_reader import KeyNodes, YamlReader

if TYPE_CHECKING:
    from .edge import ListenerConfig, PublicListenerConfig

__all__ = ["check_pq_pair", "connectors_pq_pair", "ml_dsa_pairs"]


def check_pq_pair(r: YamlReader, keys: KeyNodes, section: str) -> None:
    """``pq-certfile`` and ``pq-keyfile`` come together, or not at all."""
    if ("pq-certfile" in keys) != ("pq-keyfile" in keys):
        given = "pq-certfile" if "pq-certfile" in keys else "pq-keyfile"
        other = "pq-keyfile" if given == "pq-certfile" else "pq-certfile"
        raise r.error(keys[given][0], f"{section}.{given}", f"give {section}.{other} too")


def connectors_pq_pair(
    r: YamlReader, keys: KeyNodes, values: dict[str, Any], public: PublicListenerConfig
) -> None:
    """Fill the connectors' ML-DSA pair in ``values``: its own, or the public one when the
    section names no certificate at all; refused (or, inherited, dropped) under ``off``."""
    check_pq_pair(r, keys, "connectors")
    own = "pq-certfile" in keys
    if not own and "certfile" not in keys:
        values["pq_certfile"], values["pq_keyfile"] = public.pq_certfile, public.pq_keyfile
    if values.get("post_quantum") is Policy.OFF and values.get("pq_certfile") is not None:
        if own:
            raise r.error(
                keys["pq-certfile"][0],
                "connectors.pq-certfile",
                "ML-DSA authentication runs in the post-quantum TLS engines: set "
                "connectors.post-quantum to prefer or require, or drop the ML-DSA pair",
            )
        values["pq_certfile"] = values["pq_keyfile"] = None


def ml_dsa_pairs(listener: ListenerConfig) -> list[tuple[Path, Path]]:
    """The listener's ML-DSA pair as ``configure_auth``/``ssl_context`` take extra pairs."""
    if listener.pq_certfile is None or listener.pq_keyfile is None:
        return []
    return [(listener.pq_certfile, listener.pq_keyfile)]
