"""pq-tunnel: an edge and a connector carrying HTTP to a private origin, every hop post-quantum."""
