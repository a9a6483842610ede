"""The TCP layer's per-connection shortcuts keep Python's ``ssl`` semantics.

To cost what Python's C ``ssl`` costs, the layer keeps some things instead of asking again: the
built OpenSSL context until a setting changes, what a handshake negotiated, the
``getpeercert()`` dict of a certificate, the parsed server name. These tests change every
setting that feeds the OpenSSL context after the context was used, and check that each cached
answer is the right one and cannot be changed by a caller. The "NOT post-quantum" warning's
rate limit is here too: one WARNING per kind of classical peer per minute, INFO for the rest.
"""

from __future__ import annotations

import logging
import ssl
import warnings
from typing import Any

import pytest
from tls_util import client_ctx, server_ctx, stdlib_client

from pq_quic_plugin.tls_binding import notices
from pq_quic_plugin.tls_binding.notices import ClassicalNotices


def _handshake(server: Any, client: Any, host: Any = "localhost") -> tuple[Any, Any]:
    """A client and a server object over memory BIOs, pumped by hand until both are done (or
    one raises something other than "want read")."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server_obj = server.wrap_bio(s_in, s_out, server_side=True)
    client_obj = client.wrap_bio(c_in, c_out, server_hostname=host)
    for _ in range(6):
        done = 0
        for side in (client_obj, server_obj):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if done == 2:
            return server_obj, client_obj
    raise AssertionError("handshake did not finish")


def test_stdlib_settings_changed_after_use_reach_new_connections(pki) -> None:
    """``options``, ``verify_mode``, ``check_hostname``, ``verify_flags`` and the version
    bounds live in the stdlib half of the context; changing any of them after a connection
    must rebuild the OpenSSL context for the next one (and only then)."""
    server, client = server_ctx(pki), client_ctx(pki)
    built = client.openssl_context()
    assert _handshake(server, client)[1].version() == "TLSv1.3"
    assert client.openssl_context() is built  # used, unchanged: kept

    with warnings.catch_warnings():  # the stdlib deprecates OP_NO_TLS*; still honoured
        warnings.simplefilter("ignore", DeprecationWarning)
        client.options |= ssl.OP_NO_TLSv1_3
    assert client.openssl_context() is not built
    assert _handshake(server, client)[1].version() == "TLSv1.2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.options &= ~ssl.OP_NO_TLSv1_3

    client.maximum_version = ssl.TLSVersion.TLSv1_2
    assert _handshake(server, client)[1].version() == "TLSv1.2"
    client.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    assert _handshake(server, client)[1].version() == "TLSv1.3"

    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(server, client, host="wrong.example")
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    assert _handshake(server, client, host="wrong.example")[1].getpeercert() == {}
    client.check_hostname = True  # turns CERT_REQUIRED back on, inside the stdlib
    assert client.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client, host="wrong.example")

    client.verify_flags |= ssl.VERIFY_X509_STRICT
    assert client.openssl_context() is not built
    assert _handshake(server, client)[1].group() == "X25519MLKEM768"


def test_server_names_and_addresses_are_checked_on_every_connection(pki) -> None:
    """The parsed server name is cached; what it is checked against is not."""
    server, client = server_ctx(pki), client_ctx(pki)
    for _ in range(2):
        assert _handshake(server, client, host="localhost")[1].server_hostname == "localhost"
        assert _handshake(server, client, host=b"localhost")[1].server_hostname == "localhost"
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            _handshake(server, client, host="10.9.8.7")
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            _handshake(server, client, host="other.localhost")


def test_negotiated_facts_are_read_once_and_stay_after_close(pki) -> None:
    server_obj, client_obj = _handshake(server_ctx(pki), client_ctx(pki))
    facts = (client_obj.group(), client_obj.cipher(), client_obj.version())
    assert facts[0] == "X25519MLKEM768" and facts[2] == "TLSv1.3"
    assert client_obj.pq_group is server_obj.pq_group and client_obj.pq_group.post_quantum
    assert server_obj.cipher() == client_obj.cipher()
    with pytest.raises(ssl.SSLWantReadError):
        client_obj.unwrap()
    assert (client_obj.group(), client_obj.cipher(), client_obj.version()) == facts


def test_getpeercert_gives_each_caller_its_own_dict(pki) -> None:
    server, client = server_ctx(pki), client_ctx(pki)
    first = _handshake(server, client)[1].getpeercert()
    expected = dict(first)
    first["subject"] = "changed by the first caller"
    first.clear()
    second = _handshake(server, client)[1].getpeercert()
    assert second == expected and second["subject"] == ((("commonName", "localhost"),),)


# ------------------------------------------------------------------ the warning's rate limit


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_warning_per_kind_per_window_the_rest_at_info(caplog) -> None:
    clock = _Clock()
    limiter = ClassicalNotices(logging.getLogger("pq_quic_plugin.tls.test"), clock=clock)
    curl, tls12 = ("server", "x25519", "TLSv1.3"), ("server", "x25519", "TLSv1.2")
    with caplog.at_level(logging.INFO, logger="pq_quic_plugin.tls.test"):
        for _ in range(5):
            limiter.log(curl, "peer %s", "curl")
        limiter.log(tls12, "peer %s", "old")  # another kind: its own warning
        clock.now += notices.WINDOW - 1
        limiter.log(curl, "peer %s", "curl")  # still inside the window
        clock.now += 1
        limiter.log(curl, "peer %s", "curl")  # a new window: warns, with the count
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert levels == [
        ("WARNING", "peer curl"),
        *[("INFO", "peer curl")] * 4,
        ("WARNING", "peer old"),
        ("INFO", "peer curl"),
        (
            "WARNING",
            "peer curl (and 5 more like this since the last such warning, logged at INFO)",
        ),
    ]


def test_a_server_warns_once_for_a_run_of_classical_clients(pki, caplog) -> None:
    """Python's ``ssl`` (no ML-KEM) as the client, four times against one server context: one
    WARNING, three INFO lines; a second server context warns on its own."""
    server = server_ctx(pki)
    with caplog.at_level(logging.INFO, logger="pq_quic_plugin.tls"):
        for _ in range(4):
            _handshake(server, stdlib_client(pki))
        _handshake(server_ctx(pki), stdlib_client(pki))
    lines = [
        r.levelname for r in caplog.records if "server negotiated x25519 over TCP" in r.getMessage()
    ]
    assert lines == ["WARNING", "INFO", "INFO", "INFO", "WARNING"]
