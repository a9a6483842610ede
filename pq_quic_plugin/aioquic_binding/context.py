"""A ``tls.Context`` whose key exchange runs through KEM-shaped groups.

aioquic keeps every group-specific line in three methods of ``tls.Context``: the client's
ClientHello, the client's ServerHello handling and the server's ClientHello handling. This
subclass replaces exactly those three, following aioquic 1.7's code line for line where it does
not touch key exchange (PSK, early data, certificates), and adds what aioquic lacks:

* groups are :class:`~pq_quic_plugin.groups.base.Group` objects, so ML-KEM and the hybrids need
  no special cases;
* the server follows *its own* preference order (aioquic takes the client's first share);
* HelloRetryRequest in both directions (RFC 8446 4.1.4), with the ``message_hash`` transcript;
* the negotiated group is recorded in :attr:`PostQuantumContext.pq_negotiated_group`.

Everything else (certificates, Finished, tickets, key updates) is aioquic's own code. An existing
context is converted in place by :meth:`PostQuantumContext.adopt` right after aioquic built it,
so no constructor arguments have to be duplicated here. The two sides live in
:mod:`.client_side` and :mod:`.server_side`, their shared state in :mod:`.context_base`.
"""

from __future__ import annotations

from aioquic import tls

from ..policy import GroupPolicy
from .client_side import ClientHandshake
from .server_side import ServerHandshake


class PostQuantumContext(ClientHandshake, ServerHandshake):
    """aioquic's TLS 1.3 engine with the key exchange made KEM-shaped and policy-driven."""

    @classmethod
    def adopt(cls, context: tls.Context, policy: GroupPolicy) -> PostQuantumContext:
        """Turn a context aioquic just built into a post-quantum one, keeping its settings."""
        if context.state not in (
            tls.State.CLIENT_HANDSHAKE_START,
            tls.State.SERVER_EXPECT_CLIENT_HELLO,
        ):
            raise RuntimeError("a TLS context can only be made post-quantum before its handshake")
        context.__class__ = cls
        assert isinstance(context, PostQuantumContext)
        context.pq_policy = policy
        context.pq_negotiated_group = None
        context.pq_hello_retry = False
        context._pq_client_states = {}
        context._pq_first_client_hello = None
        context._pq_retry_key_schedule = None
        context._pq_retry_sent = None
        context._pq_retry_transcript = None
        # Keep aioquic's own bookkeeping consistent for code that reads it.
        context._supported_groups = [g.codepoint for g in policy.groups]  # type: ignore[misc]
        return context
