"""The server side of the post-quantum handshake: its own group order, HelloRetryRequest.

aioquic 1.7's ``_server_handle_hello`` with the group code replaced: the server picks by *its*
preference order (:meth:`~pq_quic_plugin.policy.GroupPolicy.select`), asks for a better share
with a HelloRetryRequest when the client listed a post-quantum group without sending a share,
and refuses with a ``handshake_failure`` that says why when no group is acceptable. PSK,
early data and the certificate messages follow aioquic's code line for line.
"""

from __future__ import annotations

import os

from aioquic import tls
from aioquic.buffer import Buffer

from ..groups.base import Group, InvalidKeyShare
from ..policy import Policy
from .context_base import PostQuantumContextBase, codepoint_names, logger
from .messages import HelloRetryRequest, message_hash, push_hello_retry_request
from .reasons import bounded_reason, summarize

#: How many group names a refusal's reason shows of each list (it must stay short).
REASON_ITEMS = 3


class ServerHandshake(PostQuantumContextBase):
    """The server's overridden step of aioquic's TLS engine, and the retry and refusal."""

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
        # Which certificate and scheme: per client, under the authentication policy.
        credential, signature_algorithm = self._pq_choose_credential(
            peer_hello.signature_algorithms
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
            raise tls.AlertIllegalParameter(
                bounded_reason(f"ClientHello key share: {exc}")
            ) from None
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
            self._pq_send_certificate(credential, signature_algorithm, handshake_buf)

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
            codepoint_names([cp for cp, _ in peer_hello.key_share or []]),
            self.pq_policy.policy.value,
        )

    def _pq_refuse(self, peer_hello: tls.ClientHello) -> None:
        """No acceptable group: a handshake_failure alert whose reason says why, and a log line.

        Both name the client's groups as a count and the first few: the client decides how many
        it lists, and the reason must fit one Initial packet (:mod:`.reasons`).
        """
        offered = codepoint_names(peer_hello.supported_groups or [], REASON_ITEMS)
        accepts = summarize(self.pq_policy.names, REASON_ITEMS)
        if self.pq_policy.policy is Policy.REQUIRE:
            reason = (
                f"client offered no post-quantum key-exchange group (offered {offered}); "
                f"server policy is 'require' (accepts {accepts})"
            )
        else:
            reason = (
                f"no key-exchange group in common (client offered {offered}; "
                f"server accepts {accepts})"
            )
        reason = bounded_reason(reason)
        logger.warning("refusing handshake: %s", reason)
        raise tls.AlertHandshakeFailure(reason)
