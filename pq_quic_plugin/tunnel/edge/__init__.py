"""The edge: public listener, connector listener, live-connection registry, tunnel store."""
