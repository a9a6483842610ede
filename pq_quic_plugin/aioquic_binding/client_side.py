"""The client side of the post-quantum handshake: ClientHello, ServerHello, HelloRetryRequest.

aioquic 1.7's ``_client_send_hello`` and ``_client_handle_hello`` with the group code replaced:
key shares come from the policy's KEM-shaped groups, and a HelloRetryRequest is answered with a
second ClientHello carrying the share the server asked for (RFC 8446 4.1.4). The signature
schemes offered come from the authentication policy (:mod:`.authentication`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aioquic import tls
from aioquic.buffer import Buffer

from ..groups.base import InvalidKeyShare
from .context_base import PostQuantumContextBase, codepoint_names, logger
from .messages import (
    AlertUnsupportedExtension,
    is_hello_retry_request,
    message_hash,
    pull_hello_retry_request,
)
from .reasons import bounded_reason


class ClientHandshake(PostQuantumContextBase):
    """The client's two overridden steps of aioquic's TLS engine, and its answer to a retry."""

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
            signature_algorithms=self._pq_offered_signature_algorithms(),
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
            raise tls.AlertIllegalParameter(
                bounded_reason(f"ServerHello key share: {exc}")
            ) from None
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
            raise AlertUnsupportedExtension("HelloRetryRequest has an extension we did not offer")
        group = next((g for g in self.pq_policy.groups if g.codepoint == hrr.selected_group), None)
        if group is None or hrr.selected_group < 0:
            raise tls.AlertIllegalParameter(
                "HelloRetryRequest selects a group we did not offer "
                f"({codepoint_names([hrr.selected_group])})"
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
