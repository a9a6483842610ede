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

    # -- a tunnel connection (both sides)
    def handshake(self, group: str | None, ok: bool, seconds: float) -> None:
        """A tunnel connection's handshake finished (``ok``) or failed after ``seconds``.

        The edge reports ``ok`` once the connection has also registered (``seconds`` from
        its first datagram), and a failure for a connection that closed before its handshake
        finished (a classical connector under ``require``, a peer that went silent)."""

    # -- a tunnel connection (connector side)
    def reconnect(self) -> None:
        """A tunnel connection is about to be re-established."""

    def connection_registered(self, conn_index: int, location: str) -> None:
        """HA connection ``conn_index`` registered with an edge at ``location``."""

    def connection_lost(self, conn_index: int) -> None:
        """HA connection ``conn_index`` is no longer registered."""

    def origin_error(self) -> None:
        """A request could not be proxied to the origin (unreachable, timed out, broke off)."""

    # -- proxied requests (both sides)
    def request_started(self, tunnel_id: str = "") -> None:
        """A proxied request began (``tunnel_id``: the tunnel it goes through, known on the
        edge); :meth:`request_done` follows exactly once."""

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

    def connection_registered(self, conn_index: int, location: str) -> None:
        for o in self.observers:
            o.connection_registered(conn_index, location)

    def connection_lost(self, conn_index: int) -> None:
        for o in self.observers:
            o.connection_lost(conn_index)

    def origin_error(self) -> None:
        for o in self.observers:
            o.origin_error()

    def request_started(self, tunnel_id: str = "") -> None:
        for o in self.observers:
            o.request_started(tunnel_id)

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
