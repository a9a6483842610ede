"""The connector: keeps HA connections to the edges and proxies their requests to the origin."""
