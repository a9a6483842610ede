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
so no constructor arguments have to be duplicated here.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Sequence
from typing import Any

from aioquic import tls
from aioquic.buffer import Buffer

from ..groups.base import Group, InvalidKeyShare
from ..policy import GroupPolicy, Policy
from .messages import (
    HelloRetryRequest,
    is_hello_retry_request,
    message_hash,
    pull_hello_retry_request,
    push_hello_retry_request,
)

logger = logging.getLogger("pq_quic_plugin.tls")


def _names(codepoints: list[int] | None, policy: GroupPolicy) -> str:
    """Readable names for codepoints a peer sent, for logs and alerts."""
    from ..plugins import registry

    reg = registry()
    out = []
    for cp in codepoints or []:
        group = reg.by_codepoint(cp)
        if group is not None:
            out.append(group.name)
        elif (cp & 0x0F0F) == 0x0A0A:
            out.append("GREASE")
        else:
            out.append(f"0x{cp:04X}")
    return ", ".join(out) or "none"


class PostQuantumContext(tls.Context):
    """aioquic's TLS 1.3 engine with the key exchange made KEM-shaped and policy-driven."""

    pq_policy: GroupPolicy
    pq_negotiated_group: Group | None
    pq_hello_retry: bool
    _pq_client_states: dict[int, tuple[Group, Any]]
    _pq_first_client_hello: bytes | None
    _pq_retry_key_schedule: tls.KeySchedule | None
    _pq_retry_sent: tuple[Group, int] | None  # server: (group asked for, cipher suite)
    _pq_retry_transcript: bytes | None  # server: message_hash(CH1) + HRR

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

    # ------------------------------------------------------------------ client

    def _client_send_hello(self, output_buf: Buffer) -> None:
        key_share = []
        for group in self.pq_policy.key_share_groups:
            state, share = group.generate()
            self._pq_client_states[group.codepoint] = (group, state)
            key_share.append((group.codepoint, share))
        start = output_buf.tell()
        self._pq_push_client_hello(output_buf, key_share, allow_psk=True)
        self._pq_first_client_hello = output_buf.data_slice(start, output_buf.tell())
        logger.debug(
            "ClientHello offers [%s], key shares [%s] (%s)",
            ", ".join(self.pq_policy.names),
            ", ".join(g.name for g in self.pq_policy.key_share_groups),
            self.pq_policy.policy.value,
        )
        self._set_state(tls.State.CLIENT_EXPECT_SERVER_HELLO)

    def _pq_push_client_hello(
        self,
        output_buf: Buffer,
        key_share: list[tuple[int, bytes]],
        allow_psk: bool,
        extra_extensions: Sequence[tuple[int, bytes]] | None = None,
        key_schedule: tls.KeySchedule | None = None,
    ) -> None:
        """Write a ClientHello; aioquic 1.7's ``_client_send_hello`` minus the group code.

        After a HelloRetryRequest the second hello carries no PSK (allowed by RFC 8446 4.1.2:
        a client may drop PSKs) and so no early data, which keeps the binder computation out of
        the retry path.
        """
        try:
            ipaddress.ip_address(self._server_name)  # type: ignore[arg-type]
        except ValueError:
            server_name = self._server_name
        else:
            server_name = None

        hello = tls.ClientHello(
            random=self.client_random,
            legacy_session_id=self.legacy_session_id,
            cipher_suites=[int(x) for x in self._cipher_suites],
            legacy_compression_methods=self._legacy_compression_methods,
            alpn_protocols=self._alpn_protocols,
            key_share=key_share,
            psk_key_exchange_modes=(
                self._psk_key_exchange_modes
                if (self.session_ticket or self.new_session_ticket_cb is not None)
                else None
            ),
            server_name=server_name,
            signature_algorithms=self._signature_algorithms,
            supported_groups=[g.codepoint for g in self.pq_policy.groups],
            supported_versions=self._supported_versions,
            other_extensions=list(self.handshake_extensions) + list(extra_extensions or []),
        )

        binder_key = b""
        binder_length = 0
        if allow_psk and self.session_ticket and self.session_ticket.is_valid:
            self._key_schedule_psk = tls.KeySchedule(self.session_ticket.cipher_suite)
            self._key_schedule_psk.extract(self.session_ticket.resumption_secret)
            binder_key = self._key_schedule_psk.derive_secret(b"res binder")
            binder_length = self._key_schedule_psk.algorithm.digest_size
            if self.session_ticket.max_early_data_size is not None:
                hello.early_data = True
            hello.pre_shared_key = tls.OfferedPsks(
                identities=[(self.session_ticket.ticket, self.session_ticket.obfuscated_age)],
                binders=[bytes(binder_length)],
            )

        schedule: tls.KeySchedule | tls.KeyScheduleProxy
        if key_schedule is None:
            self._key_schedule_proxy = tls.KeyScheduleProxy(self._cipher_suites)
            self._key_schedule_proxy.extract(None)
            schedule = self._key_schedule_proxy
        else:
            schedule = key_schedule

        with tls.push_message(schedule, output_buf):
            hello_start = output_buf.tell()
            tls.push_client_hello(output_buf, hello)
            if hello.pre_shared_key is not None:
                assert self._key_schedule_psk is not None
                binder_start = output_buf.tell() - binder_length
                binders_start = binder_start - 3
                self._key_schedule_psk.update_hash(
                    output_buf.data_slice(hello_start, binders_start)
                )
                binder = self._key_schedule_psk.finished_verify_data(binder_key)
                output_buf.seek(binder_start)
                output_buf.push_bytes(binder)
                self._key_schedule_psk.update_hash(
                    output_buf.data_slice(binders_start, output_buf.tell())
                )
                if hello.early_data:
                    early_key = self._key_schedule_psk.derive_secret(b"c e traffic")
                    self.update_traffic_key_cb(
                        tls.Direction.ENCRYPT,
                        tls.Epoch.ZERO_RTT,
                        self._key_schedule_psk.cipher_suite,
                        early_key,
                    )

    def _client_handle_hello(self, input_buf: Buffer, output_buf: Buffer) -> None:
        if is_hello_retry_request(input_buf.data_slice(0, input_buf.capacity)):
            self._pq_client_handle_retry(input_buf, output_buf)
            return

        peer_hello = tls.pull_server_hello(input_buf)
        cipher_suite = tls.negotiate(
            self._cipher_suites,
            [peer_hello.cipher_suite],
            tls.AlertHandshakeFailure("Unsupported cipher suite"),
        )
        if peer_hello.compression_method not in self._legacy_compression_methods:
            raise tls.AlertIllegalParameter(
                "ServerHello has a compression method we did not advertise"
            )
        if peer_hello.supported_version not in self._supported_versions:
            raise tls.AlertIllegalParameter("ServerHello has a version we did not advertise")
        if peer_hello.key_share is None:
            raise tls.AlertMissingExtension("ServerHello has no key share")

        if peer_hello.pre_shared_key is not None:
            if (
                self._key_schedule_psk is None
                or peer_hello.pre_shared_key != 0
                or cipher_suite != self._key_schedule_psk.cipher_suite
            ):
                raise tls.AlertIllegalParameter
            self.key_schedule = self._key_schedule_psk
            self._session_resumed = True
        elif self._pq_retry_key_schedule is not None:
            if cipher_suite != self._pq_retry_key_schedule.cipher_suite:
                raise tls.AlertIllegalParameter(
                    "ServerHello cipher suite differs from the HelloRetryRequest's"
                )
            self.key_schedule = self._pq_retry_key_schedule
        else:
            assert self._key_schedule_proxy is not None
            self.key_schedule = self._key_schedule_proxy.select(cipher_suite)
        self._key_schedule_psk = None
        self._key_schedule_proxy = None
        self._pq_retry_key_schedule = None

        codepoint, reply = peer_hello.key_share
        entry = self._pq_client_states.get(codepoint)
        if entry is None:
            raise tls.AlertIllegalParameter("ServerHello has a key share we did not advertise")
        group, state = entry
        try:
            shared_key = group.decapsulate(state, reply)
        except InvalidKeyShare as exc:
            raise tls.AlertIllegalParameter(f"ServerHello key share: {exc}") from None
        self._pq_client_states.clear()
        self._pq_record(group)

        assert self.key_schedule is not None
        self.key_schedule.update_hash(input_buf.data)
        self.key_schedule.extract(shared_key)
        self._setup_traffic_protection(tls.Direction.DECRYPT, tls.Epoch.HANDSHAKE, b"s hs traffic")
        self._setup_traffic_protection(tls.Direction.ENCRYPT, tls.Epoch.HANDSHAKE, b"c hs traffic")
        self._set_state(tls.State.CLIENT_EXPECT_ENCRYPTED_EXTENSIONS)

    def _pq_client_handle_retry(self, input_buf: Buffer, output_buf: Buffer) -> None:
        """Answer a HelloRetryRequest with a second ClientHello (RFC 8446 4.1.4)."""
        if self.pq_hello_retry:
            raise tls.AlertUnexpectedMessage("received a second HelloRetryRequest")
        hrr = pull_hello_retry_request(input_buf)
        cipher_suite = tls.negotiate(
            self._cipher_suites,
            [hrr.cipher_suite],
            tls.AlertIllegalParameter("HelloRetryRequest has a cipher suite we did not offer"),
        )
        if hrr.supported_version not in self._supported_versions:
            raise tls.AlertIllegalParameter("HelloRetryRequest has a version we did not offer")
        if hrr.legacy_session_id != self.legacy_session_id:
            raise tls.AlertIllegalParameter("HelloRetryRequest echoes the wrong session id")
        if hrr.other_extensions:
            from .messages import AlertUnsupportedExtension

            raise AlertUnsupportedExtension("HelloRetryRequest has an extension we did not offer")
        group = next((g for g in self.pq_policy.groups if g.codepoint == hrr.selected_group), None)
        if group is None or hrr.selected_group < 0:
            raise tls.AlertIllegalParameter(
                "HelloRetryRequest selects a group we did not offer "
                f"({_names([hrr.selected_group], self.pq_policy)})"
            )
        if group.codepoint in self._pq_client_states:
            raise tls.AlertIllegalParameter(
                f"HelloRetryRequest asks for {group.name}, for which we already sent a share"
            )
        self.pq_hello_retry = True
        logger.info("server sent HelloRetryRequest for %s; sending a new key share", group.name)

        schedule = tls.KeySchedule(cipher_suite)
        schedule.extract(None)
        assert self._pq_first_client_hello is not None
        schedule.update_hash(message_hash(self._pq_first_client_hello, schedule.algorithm))
        schedule.update_hash(input_buf.data)

        self._pq_client_states.clear()
        state, share = group.generate()
        self._pq_client_states[group.codepoint] = (group, state)
        extra = []
        if hrr.cookie is not None:
            extra.append(
                (tls.ExtensionType.COOKIE, len(hrr.cookie).to_bytes(2, "big") + hrr.cookie)
            )
        self._key_schedule_psk = None
        self._pq_push_client_hello(
            output_buf,
            [(group.codepoint, share)],
            allow_psk=False,
            extra_extensions=extra,
            key_schedule=schedule,
        )
        self._key_schedule_proxy = None
        self._pq_retry_key_schedule = schedule

    # ------------------------------------------------------------------ server

    def _server_handle_hello(
        self, input_buf: Buffer, initial_buf: Buffer, handshake_buf: Buffer
    ) -> None:
        peer_hello = tls.pull_client_hello(input_buf)

        cipher_suite = tls.negotiate(
            self._cipher_suites,
            peer_hello.cipher_suites,
            tls.AlertHandshakeFailure("No supported cipher suite"),
        )
        compression_method = tls.negotiate(
            self._legacy_compression_methods,
            peer_hello.legacy_compression_methods,
            tls.AlertHandshakeFailure("No supported compression method"),
        )
        psk_key_exchange_mode = tls.negotiate(
            self._psk_key_exchange_modes, peer_hello.psk_key_exchange_modes
        )
        signature_algorithm = tls.negotiate(
            self._signature_algorithms_for_private_key(),
            peer_hello.signature_algorithms,
            tls.AlertHandshakeFailure("No supported signature algorithm"),
        )
        supported_version = tls.negotiate(
            self._supported_versions,
            peer_hello.supported_versions,
            tls.AlertProtocolVersion("No supported protocol version"),
        )
        if peer_hello.key_share is None:
            raise tls.AlertMissingExtension("ClientHello has no key share")

        offered = [cp for cp, _ in peer_hello.key_share]
        if len(set(offered)) != len(offered):
            raise tls.AlertIllegalParameter("ClientHello has two key shares for one group")

        retried = self._pq_retry_sent
        if retried is not None:
            if cipher_suite != retried[1]:
                raise tls.AlertIllegalParameter(
                    "second ClientHello changed the cipher suite chosen by the retry"
                )
            if peer_hello.early_data:
                raise tls.AlertIllegalParameter("early data after a HelloRetryRequest")

        selection = self.pq_policy.select(
            offered, peer_hello.supported_groups, retry_allowed=retried is None
        )
        if retried is not None and selection.group is not retried[0]:
            raise tls.AlertIllegalParameter(
                f"second ClientHello has no key share for {retried[0].name}, "
                "which the HelloRetryRequest asked for"
            )
        if selection.group is None and selection.retry_group is not None:
            self._pq_send_retry(
                input_buf,
                initial_buf,
                peer_hello,
                selection.retry_group,
                cipher_suite,
                supported_version,
            )
            return
        if selection.group is None:
            self._pq_refuse(peer_hello)
        group = selection.group
        assert group is not None

        if self._alpn_protocols is not None:
            self.alpn_negotiated = tls.negotiate(
                self._alpn_protocols,
                peer_hello.alpn_protocols,
                tls.AlertNoApplicationProtocol("No common ALPN protocols"),
            )

        self.client_random = peer_hello.random
        self.server_random = os.urandom(32)
        self.legacy_session_id = peer_hello.legacy_session_id
        self.received_extensions = peer_hello.other_extensions

        if self.alpn_cb:
            self.alpn_cb(self.alpn_negotiated)  # type: ignore[arg-type]

        # Session resumption, as aioquic does it; skipped after a retry, because the binder
        # would cover the retry transcript and declining a PSK is always allowed.
        pre_shared_key = None
        if (
            retried is None
            and self.get_session_ticket_cb is not None
            and psk_key_exchange_mode is not None
            and peer_hello.pre_shared_key is not None
            and len(peer_hello.pre_shared_key.identities) == 1
            and len(peer_hello.pre_shared_key.binders) == 1
        ):
            identity = peer_hello.pre_shared_key.identities[0]
            session_ticket = self.get_session_ticket_cb(identity[0])
            if (
                session_ticket is not None
                and session_ticket.is_valid
                and session_ticket.cipher_suite == cipher_suite
            ):
                self.key_schedule = tls.KeySchedule(cipher_suite)
                self.key_schedule.extract(session_ticket.resumption_secret)
                binder_key = self.key_schedule.derive_secret(b"res binder")
                binder_length = self.key_schedule.algorithm.digest_size
                hash_offset = input_buf.tell() - binder_length - 3
                binder = input_buf.data_slice(hash_offset + 3, hash_offset + 3 + binder_length)
                self.key_schedule.update_hash(input_buf.data_slice(0, hash_offset))
                expected_binder = self.key_schedule.finished_verify_data(binder_key)
                if binder != expected_binder:
                    raise tls.AlertHandshakeFailure("PSK validation failed")
                self.key_schedule.update_hash(
                    input_buf.data_slice(hash_offset, hash_offset + 3 + binder_length)
                )
                self._session_resumed = True
                if peer_hello.early_data:
                    early_key = self.key_schedule.derive_secret(b"c e traffic")
                    self.early_data_accepted = True
                    self.update_traffic_key_cb(
                        tls.Direction.DECRYPT,
                        tls.Epoch.ZERO_RTT,
                        self.key_schedule.cipher_suite,
                        early_key,
                    )
                pre_shared_key = 0

        if pre_shared_key is None:
            self.key_schedule = tls.KeySchedule(cipher_suite)
            self.key_schedule.extract(None)
            if self._pq_retry_transcript is not None:
                self.key_schedule.update_hash(self._pq_retry_transcript)
            self.key_schedule.update_hash(input_buf.data)
        assert self.key_schedule is not None

        peer_share = dict(peer_hello.key_share)[group.codepoint]
        try:
            shared_key, reply = group.encapsulate(peer_share)
        except InvalidKeyShare as exc:
            raise tls.AlertIllegalParameter(f"ClientHello key share: {exc}") from None
        self._pq_record(group)

        hello = tls.ServerHello(
            random=self.server_random,
            legacy_session_id=self.legacy_session_id,
            cipher_suite=cipher_suite,
            compression_method=compression_method,
            key_share=(group.codepoint, reply),
            pre_shared_key=pre_shared_key,
            supported_version=supported_version,
        )
        with tls.push_message(self.key_schedule, initial_buf):
            tls.push_server_hello(initial_buf, hello)
        self.key_schedule.extract(shared_key)

        self._setup_traffic_protection(tls.Direction.ENCRYPT, tls.Epoch.HANDSHAKE, b"s hs traffic")
        self._setup_traffic_protection(tls.Direction.DECRYPT, tls.Epoch.HANDSHAKE, b"c hs traffic")

        with tls.push_message(self.key_schedule, handshake_buf):
            tls.push_encrypted_extensions(
                handshake_buf,
                tls.EncryptedExtensions(
                    alpn_protocol=self.alpn_negotiated,
                    early_data=self.early_data_accepted,
                    other_extensions=self.handshake_extensions,
                ),
            )

        if pre_shared_key is None:
            if self._request_client_certificate:
                with tls.push_message(self.key_schedule, handshake_buf):
                    tls.push_certificate_request(
                        handshake_buf,
                        tls.CertificateRequest(
                            request_context=b"", signature_algorithms=self._signature_algorithms
                        ),
                    )
            assert self.certificate is not None and self.certificate_private_key is not None
            with tls.push_message(self.key_schedule, handshake_buf):
                tls.push_certificate(
                    handshake_buf,
                    tls.Certificate(
                        request_context=b"",
                        certificates=[
                            (x.public_bytes(tls.Encoding.DER), b"")
                            for x in [self.certificate] + self.certificate_chain
                        ],
                    ),
                )
            signature = self.certificate_private_key.sign(
                self.key_schedule.certificate_verify_data(tls.SERVER_CONTEXT_STRING),
                *tls.signature_algorithm_params(signature_algorithm),
            )
            with tls.push_message(self.key_schedule, handshake_buf):
                tls.push_certificate_verify(
                    handshake_buf,
                    tls.CertificateVerify(algorithm=signature_algorithm, signature=signature),
                )

        with tls.push_message(self.key_schedule, handshake_buf):
            tls.push_finished(
                handshake_buf,
                tls.Finished(
                    verify_data=self.key_schedule.finished_verify_data(self._enc_key or b"")
                ),
            )

        assert self.key_schedule.generation == 2
        self.key_schedule.extract(None)
        self._setup_traffic_protection(tls.Direction.ENCRYPT, tls.Epoch.ONE_RTT, b"s ap traffic")
        self._next_dec_key = self.key_schedule.derive_secret(b"c ap traffic")

        self._psk_key_exchange_mode = psk_key_exchange_mode
        if self._request_client_certificate:
            self._set_state(tls.State.SERVER_EXPECT_CERTIFICATE)
        else:
            self._server_expect_finished()

    def _pq_send_retry(
        self,
        input_buf: Buffer,
        initial_buf: Buffer,
        peer_hello: tls.ClientHello,
        group: Group,
        cipher_suite: tls.CipherSuite,
        supported_version: int,
    ) -> None:
        """Ask the client for a share of ``group`` and stay in SERVER_EXPECT_CLIENT_HELLO."""
        algorithm = tls.cipher_suite_hash(cipher_suite)
        start = initial_buf.tell()
        push_hello_retry_request(
            initial_buf,
            HelloRetryRequest(
                legacy_session_id=peer_hello.legacy_session_id,
                cipher_suite=cipher_suite,
                selected_group=group.codepoint,
                supported_version=supported_version,
            ),
        )
        hrr_bytes = initial_buf.data_slice(start, initial_buf.tell())
        self._pq_retry_transcript = message_hash(input_buf.data, algorithm) + hrr_bytes
        self._pq_retry_sent = (group, cipher_suite)
        self.pq_hello_retry = True
        logger.info(
            "HelloRetryRequest for %s: client listed it but sent shares only for [%s] (%s)",
            group.name,
            _names([cp for cp, _ in peer_hello.key_share or []], self.pq_policy),
            self.pq_policy.policy.value,
        )

    def _pq_refuse(self, peer_hello: tls.ClientHello) -> None:
        """No acceptable group: a handshake_failure alert whose reason says why, and a log line."""
        offered = _names(peer_hello.supported_groups or [], self.pq_policy)
        if self.pq_policy.policy is Policy.REQUIRE:
            reason = (
                "client offered no post-quantum key-exchange group "
                f"(offered: {offered}); server policy is 'require' "
                f"(accepts: {', '.join(self.pq_policy.names)})"
            )
        else:
            reason = (
                f"no key-exchange group in common (client offered: {offered}; "
                f"server accepts: {', '.join(self.pq_policy.names)})"
            )
        logger.warning("refusing handshake: %s", reason)
        raise tls.AlertHandshakeFailure(reason)

    # ------------------------------------------------------------------ both

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
