"""The HTTP/3 client the tunnel, the demo and the tests use (aioquic, post-quantum by policy)."""
