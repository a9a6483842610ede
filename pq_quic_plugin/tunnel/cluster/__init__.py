"""Several edges as one (issue 16, phase 2): the post-quantum relay between edges ("hop 2").

An edge with no connection of a tunnel relays a visitor's request to a peer edge that has one:
:mod:`.peers` wires it together, :mod:`.peer_listener` and :mod:`.peer_serve` are the serving
side, :mod:`.peer_client` the relaying side's links (dialled by :mod:`.peer_dial`),
:mod:`.peer_auth` how edges prove the cluster secret, :mod:`.directory` and :mod:`.choose`
which peer to use. See docs/cluster.md and docs/protocol.md ("The edge-edge hop").

Nothing is imported here: the edge's app imports :mod:`.route` alone, and the rest needs the
optional ``redis`` package.
"""
