"""What the tunnel reports about itself, as an interface with a do-nothing default.

The connector and the edge call an observer at the moments an operator cares about (a handshake,
a reconnect, a request, bytes relayed, a connector registering); they never check whether
anyone is listening. ``ops`` provides the Prometheus implementation; tests and embedders can pass
their own. This replaces metrics objects attached from outside and ``if metrics is not None``
checks at every call site.
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["NO_OBSERVER", "Direction", "Observer"]

Direction = Literal["to_origin", "from_origin"]


class Observer:
    """Every method is a no-op; override the ones you need."""

    # -- a tunnel connection (connector side)
    def handshake(self, group: str | None, ok: bool, seconds: float) -> None:
        """A tunnel connection's handshake finished (``ok``) or failed after ``seconds``."""

    def reconnect(self) -> None:
        """A tunnel connection is about to be re-established."""

    # -- proxied requests (both sides)
    def request_started(self) -> None:
        """A proxied request began."""

    def request_done(self, tunnel_id: str, status: int, seconds: float) -> None:
        """A proxied request ended with ``status`` after ``seconds``."""

    def relayed(self, direction: Direction, count: int) -> None:
        """``count`` body bytes went towards or came from the origin."""

    # -- the connector listener (edge side)
    def connection_event(self, kind: str, data: dict[str, Any]) -> None:
        """A connector ``registered``, ``unregistered`` or was ``refused`` (``data`` says who)."""


#: The shared do-nothing observer.
NO_OBSERVER = Observer()
