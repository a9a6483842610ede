"""The connector's client for the private origin: HTTP/1.1, HTTP/3 and WebSocket."""
