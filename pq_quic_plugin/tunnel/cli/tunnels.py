"""``pq-tunnel create``, ``route`` and ``delete``: changing the tunnel store.

These run next to the edge, on its store (``--config edge.yaml`` or ``--store``). The running
edge sees every change without a restart: it routes each request by the store, checks the
store every second for deleted tunnels and changed hostnames, and tells the connectors
(docs/tunnel.md, "Commands").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..config import ConfigError
from .common import fail, store_path

__all__ = ["DELETE_WAIT", "cmd_create", "cmd_delete", "cmd_route"]

#: How long ``delete --force`` waits to see the edge close the deleted tunnel's connections
#: (the edge looks at the store every second).
DELETE_WAIT = 10.0


def cmd_create(args: argparse.Namespace) -> int:
    from ..credentials import write_credentials
    from ..credentials_home import default_credentials_path
    from ..edge.store import StoreError, TunnelStore

    try:
        path = store_path(args)
        with TunnelStore(path) as store:
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
    from ..edge.store import StoreError, TunnelStore
    from ..hostnames import normalize_hostname

    adding, removing = args.add_hostname or [], args.remove_hostname or []
    if not adding and not removing:
        return fail("route: give --add-hostname HOST and/or --remove-hostname HOST")
    try:
        with TunnelStore(store_path(args)) as store:
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
    from ..edge.live_file import read_live_connections
    from ..edge.store import StoreError, TunnelStore

    try:
        path = store_path(args)
        with TunnelStore(path) as store:
            found = store.require(args.name)
            live = read_live_connections(path).get(found.id, [])
            if live and not args.force:
                return fail(
                    f"tunnel {found.name} has {len(live)} live connection(s); stop its "
                    "connectors first, or pass --force to delete it and close them"
                )
            record = store.delete(found.id)
    except (ConfigError, StoreError, OSError) as exc:
        return fail(str(exc))
    print(f"Deleted tunnel {record.name} ({record.id})")
    if live:
        deadline = time.monotonic() + DELETE_WAIT
        while read_live_connections(path).get(record.id) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = len(read_live_connections(path).get(record.id, []))
        if left:
            print(f"{left} connection(s) still live: is the edge running?", file=sys.stderr)
        else:
            print(f"The edge closed its {len(live)} live connection(s) (reason: tunnel deleted)")
    return 0
