"""``pq-tunnel create``, ``route`` and ``delete``: changing the tunnel store.

These act on the edge's store (``--config edge.yaml`` or ``--store``): a SQLite file next to
the edge, or a cluster's Redis (``redis://...``), the same commands with the same words. The
running edges see every change without a restart: one on SQLite checks the file every second,
those on Redis are told at once (pub/sub); each then routes by the new hostnames and tells
its connectors (docs/tunnel.md, "Commands"; docs/cluster.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..config import ConfigError
from .common import fail, store_path
from .live_view import connections_by_tunnel, live_states

__all__ = ["DELETE_WAIT", "cmd_create", "cmd_delete", "cmd_route"]

#: How long ``delete --force`` waits to see the edge close the deleted tunnel's connections
#: (the edge looks at the store every second).
DELETE_WAIT = 10.0


def cmd_create(args: argparse.Namespace) -> int:
    from ..credentials import write_credentials
    from ..credentials_home import default_credentials_path
    from ..edge.store import StoreError, open_store

    try:
        path = store_path(args)
        with open_store(path) as store:
            record, secret = store.create(args.name, args.hostname or [])
        creds = (
            Path(args.credentials_file)
            if args.credentials_file
            else default_credentials_path(record.id)
        )
        write_credentials(creds, record.id, record.name, secret, overwrite=args.force)
    except (ConfigError, StoreError, OSError, ValueError) as exc:
        return fail(str(exc))
    print(f"Created tunnel {record.name} with id {record.id}")
    print(f"Hostnames: {', '.join(record.hostnames) or '(none)'}")
    print(f"Tunnel store: {path}")
    print(f"Credentials written to {creds} (mode 0600; keep it secret, it is the tunnel's key)")
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    """Add and remove hostnames of a tunnel; the running edge routes by the store on every
    request, so the change applies at once, and its connectors are told within a second."""
    from ..edge.store import StoreError, open_store
    from ..hostnames import normalize_hostname

    adding, removing = args.add_hostname or [], args.remove_hostname or []
    if not adding and not removing:
        return fail("route: give --add-hostname HOST and/or --remove-hostname HOST")
    try:
        with open_store(store_path(args)) as store:
            record = store.require(args.name)
            for host in removing:
                if normalize_hostname(host, allow_wildcard=True) not in record.hostnames:
                    return fail(
                        f"hostname {host!r} is not routed to tunnel {record.name} (its "
                        f"hostnames: {', '.join(record.hostnames) or 'none'})"
                    )
            for host in adding:
                record = store.add_hostname(record.id, host)
            for host in removing:
                record = store.remove_hostname(record.id, host)
    except (ConfigError, StoreError, OSError, ValueError) as exc:
        return fail(str(exc))
    print(f"Tunnel {record.name} ({record.id}) now serves: {', '.join(record.hostnames) or '-'}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a tunnel; one with live connections only with ``--force``, because deleting it
    cuts off its connectors (the running edge sees the deletion and closes them)."""
    from ..edge.store import Store, StoreError, open_store

    def live_for(store: Store, tunnel_id: str) -> list[object]:
        return list(connections_by_tunnel(live_states(store)).get(tunnel_id, []))

    try:
        with open_store(store_path(args)) as store:
            found = store.require(args.name)
            live = live_for(store, found.id)
            if live and not args.force:
                return fail(
                    f"tunnel {found.name} has {len(live)} live connection(s); stop its "
                    "connectors first, or pass --force to delete it and close them"
                )
            record = store.delete(found.id)
            print(f"Deleted tunnel {record.name} ({record.id})")
            if not live:
                return 0
            deadline = time.monotonic() + DELETE_WAIT
            while live_for(store, record.id) and time.monotonic() < deadline:
                time.sleep(0.1)
            left = len(live_for(store, record.id))
    except (ConfigError, StoreError, OSError) as exc:
        return fail(str(exc))
    if left:
        print(f"{left} connection(s) still live: is the edge running?", file=sys.stderr)
    else:
        print(f"The edge closed its {len(live)} live connection(s) (reason: tunnel deleted)")
    return 0
