"""What both sides of :class:`~.context.PostQuantumContext` share: its state and its record.

The context is split by side (:mod:`.client_side`, :mod:`.server_side`); this base declares the
attributes :meth:`~.context.PostQuantumContext.adopt` sets and the one step both sides end
with, recording (and logging) the group the handshake agreed on. What both sides do for
authentication is in :mod:`.authentication`.
"""

from __future__ import annotations

import logging
from typing import Any

from aioquic import tls
from aioquic.buffer import Buffer

from ..groups.base import Group
from ..policy import GroupPolicy
from .authentication import AuthenticationMixin
from .reasons import MAX_LOG_ITEMS, bounded_reason, summarize

logger = logging.getLogger("pq_quic_plugin.tls")


def codepoint_names(codepoints: list[int] | None, limit: int = MAX_LOG_ITEMS) -> str:
    """Readable names for codepoints a peer sent, for logs and alerts: a short list whole, a
    long one as its length and first ``limit`` names (:func:`.reasons.summarize`), because the
    peer decides how long it is."""
    from ..plugins import registry

    reg = registry()
    out = []
    for cp in (codepoints or [])[:limit]:
        group = reg.by_codepoint(cp)
        if group is not None:
            out.append(group.name)
        elif (cp & 0x0F0F) == 0x0A0A:
            out.append("GREASE")
        else:
            out.append(f"0x{cp:04X}")
    return summarize(out, limit, total=len(codepoints or []))


class PostQuantumContextBase(AuthenticationMixin):
    """aioquic's TLS engine plus the post-quantum state; not used on its own.

    Authentication (ML-DSA, several certificates) comes from :class:`AuthenticationMixin`.
    """

    pq_policy: GroupPolicy
    pq_negotiated_group: Group | None
    pq_hello_retry: bool
    _pq_client_states: dict[int, tuple[Group, Any]]
    _pq_first_client_hello: bytes | None
    _pq_retry_key_schedule: tls.KeySchedule | None
    _pq_retry_sent: tuple[Group, int] | None  # server: (group asked for, cipher suite)
    _pq_retry_transcript: bytes | None  # server: message_hash(CH1) + HRR

    def handle_message(self, input_data: bytes, output_buf: dict[tls.Epoch, Buffer]) -> None:
        """aioquic's, with the text of any alert it raises cut to :data:`.reasons.MAX_REASON_BYTES`.

        The text becomes the reason phrase of the CONNECTION_CLOSE, which must fit one Initial
        packet; this is the one exit of every alert of the engine (ours and aioquic's), so no
        alert built from what a peer sent can grow past it.
        """
        try:
            super().handle_message(input_data, output_buf)
        except tls.Alert as exc:
            text = str(exc)
            bounded = bounded_reason(text)
            if bounded != text:
                exc.args = (bounded,)
            raise

    def _pq_record(self, group: Group) -> None:
        self.pq_negotiated_group = group
        side = "client" if self._is_client else "server"
        if group.post_quantum:
            logger.info(
                "%s negotiated %s (0x%04X), post-quantum%s [%s]",
                side,
                group.name,
                group.codepoint,
                " after HelloRetryRequest" if self.pq_hello_retry else "",
                self.pq_policy.policy.value,
            )
        else:
            logger.warning(
                "%s negotiated %s (0x%04X): NOT post-quantum; the peer offered no post-quantum "
                "group in common and policy '%s' allows classical key exchange",
                side,
                group.name,
                group.codepoint,
                self.pq_policy.policy.value,
            )
