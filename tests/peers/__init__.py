"""Independent QUIC peers (code written by other people) for interoperability tests.

Talking only to our own aioquic binding proves little: these helpers drive qh3 (an aioquic
fork with its own TLS stack and a default X25519MLKEM768 offer) and niquests (HTTP/3 via qh3).
"""
