"""The edge: ``server.Edge`` wires the tunnel store, the registry of live connections, the
connector listener (``connectors``), the public ASGI app (``app``, with ``reports`` for
``/pq-report``) and the live-connection file ``pq-tunnel list`` reads (``live_file``)."""
