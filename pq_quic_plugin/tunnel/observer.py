"""What the tunnel reports about itself, as an interface with a do-nothing default.

The connector and the edge call an observer at the moments an operator cares about (a handshake,
a reconnect, a request, bytes relayed, a connector registering); they never check whether
anyone is listening. ``ops`` provides the Prometheus implementation; tests and embedders can pass
their own. This replaces metrics objects attached from outside and ``if metrics is not None``
checks at every call site.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .edge.registry import LiveConnection

__all__ = ["NO_OBSERVER", "Direction", "Observer", "Observers"]

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
        """A proxied request began; :meth:`request_done` follows exactly once."""

    def request_done(self, tunnel_id: str, status: int, seconds: float) -> None:
        """A proxied request ended with ``status`` after ``seconds``."""

    def relayed(self, direction: Direction, count: int) -> None:
        """``count`` body bytes went towards or came from the origin."""

    # -- the connector listener (edge side)
    def connector_registered(self, live: LiveConnection) -> None:
        """A connector's connection authenticated and is routable (already in the registry)."""

    def connector_unregistered(self, live: LiveConnection) -> None:
        """A registered connection closed (already out of the registry)."""

    def connector_refused(self, remote: str, reason: str) -> None:
        """A connector at ``remote`` was refused (wrong secret, unknown tunnel, ...)."""


#: The shared do-nothing observer.
NO_OBSERVER = Observer()


class Observers(Observer):
    """Several observers as one, called in order: what a part is given is always one object."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = tuple(o for o in observers if o is not NO_OBSERVER)

    def handshake(self, group: str | None, ok: bool, seconds: float) -> None:
        for o in self.observers:
            o.handshake(group, ok, seconds)

    def reconnect(self) -> None:
        for o in self.observers:
            o.reconnect()

    def request_started(self) -> None:
        for o in self.observers:
            o.request_started()

    def request_done(self, tunnel_id: str, status: int, seconds: float) -> None:
        for o in self.observers:
            o.request_done(tunnel_id, status, seconds)

    def relayed(self, direction: Direction, count: int) -> None:
        for o in self.observers:
            o.relayed(direction, count)

    def connector_registered(self, live: LiveConnection) -> None:
        for o in self.observers:
            o.connector_registered(live)

    def connector_unregistered(self, live: LiveConnection) -> None:
        for o in self.observers:
            o.connector_unregistered(live)

    def connector_refused(self, remote: str, reason: str) -> None:
        for o in self.observers:
            o.connector_refused(remote, reason)
