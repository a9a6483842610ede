"""Post-quantum authentication in the tunnel's settings and failure sorting (issue 17), in
process: the edge's ``pq-certfile``/``pq-keyfile`` rules, the connector's ``post-quantum-auth``
(file, flag, variable), and how a refusal of a classical edge is classified and announced.
The refusal texts come from the TLS layer's own functions, so a change of wording there that
the connector no longer recognises fails here."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from pq_quic_plugin.asgi.scope import connection_facts
from pq_quic_plugin.auth_policy import ML_DSA_65, SignatureScheme, client_refusal
from pq_quic_plugin.tls_binding.errors import auth_refused
from pq_quic_plugin.tunnel.config import ConfigError, load_connector_config, load_edge_config
from pq_quic_plugin.tunnel.connector.failures import FailureKind, auth_refusal, classify
from pq_quic_plugin.tunnel.connector.report import HandshakeFailure, print_banner

ECDSA = SignatureScheme("ECDSA-P256-SHA256", 0x0403)
CLASSICAL = (
    "edge presented a classical certificate (ECDSA-P256-SHA256); post-quantum-auth requires ML-DSA"
)


def _edge_yaml(tmp_path: Path, public: dict[str, Any], connectors: dict[str, Any]) -> Path:
    for name in ("cert.pem", "key.pem", "mldsa-cert.pem", "mldsa-key.pem", "own.pem"):
        (tmp_path / name).write_text("placeholder\n")
    conf = {
        "public": {
            "bind": "127.0.0.1:8443",
            "certfile": "cert.pem",
            "keyfile": "key.pem",
            **public,
        },
        "connectors": {"bind": "127.0.0.1:7844", **connectors},
    }
    path = tmp_path / "edge.yaml"
    path.write_text(json.dumps(conf))
    return path


PQ_PAIR = {"pq-certfile": "mldsa-cert.pem", "pq-keyfile": "mldsa-key.pem"}


def test_the_connector_listener_inherits_the_public_ml_dsa_pair(tmp_path: Path) -> None:
    config = load_edge_config(_edge_yaml(tmp_path, PQ_PAIR, {}))
    pair = [(tmp_path / "mldsa-cert.pem", tmp_path / "mldsa-key.pem")]
    assert config.public.certificates() == pair
    assert config.connectors.certificates() == pair


def test_a_connector_listener_with_its_own_certificate_inherits_no_ml_dsa_pair(
    tmp_path: Path,
) -> None:
    own = {"certfile": "own.pem", "keyfile": "own.pem"}
    assert load_edge_config(_edge_yaml(tmp_path, PQ_PAIR, own)).connectors.certificates() == []
    both = load_edge_config(_edge_yaml(tmp_path, {}, {**own, **PQ_PAIR}))
    assert both.public.certificates() == []
    assert both.connectors.pq_certfile == tmp_path / "mldsa-cert.pem"


@pytest.mark.parametrize("section", ["public", "connectors"])
def test_an_ml_dsa_certificate_needs_its_key(tmp_path: Path, section: str) -> None:
    half = {"pq-certfile": "mldsa-cert.pem"}
    public, connectors = (half, {}) if section == "public" else ({}, half)
    with pytest.raises(ConfigError, match=f"{section}.pq-certfile: give {section}.pq-keyfile"):
        load_edge_config(_edge_yaml(tmp_path, public, connectors))


def test_ml_dsa_needs_a_post_quantum_connector_listener(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="connectors.pq-certfile: ML-DSA authentication runs"):
        load_edge_config(_edge_yaml(tmp_path, {}, {"post-quantum": "off", **PQ_PAIR}))
    # Inherited from the public listener, it is left out instead: off stays classical.
    config = load_edge_config(_edge_yaml(tmp_path, PQ_PAIR, {"post-quantum": "off"}))
    assert config.connectors.certificates() == [] and config.public.certificates() != []


def test_post_quantum_auth_from_file_flag_and_variable(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("post-quantum-auth: true\n")
    assert load_connector_config(path).post_quantum_auth is True
    path.write_text("tunnel: demo\n")
    config = load_connector_config(path)
    assert config.post_quantum_auth is False  # the default: offer ML-DSA, accept classical
    env = config.with_overrides({"TUNNEL_POST_QUANTUM_AUTH": "true"})
    assert env.post_quantum_auth is True
    assert env.with_overrides(post_quantum_auth=False).post_quantum_auth is False


class _ClosedQuicAttempt:
    """What ``classify`` reads of a QUIC attempt our TLS engine closed with an alert."""

    closed = True
    handshake_done = False
    close_code = 0x100 + 40  # CRYPTO_ERROR + handshake_failure

    def __init__(self, reason: str) -> None:
        self.close_reason = reason


def test_a_classical_edge_under_post_quantum_auth_is_a_post_quantum_failure() -> None:
    text = client_refusal(ECDSA, ECDSA.codepoint, chain_pq=False)
    tcp_error = auth_refused(text)
    for exc, conn in ((tcp_error, None), (ConnectionError(), _ClosedQuicAttempt(text))):
        failure = classify(exc, conn, post_quantum=False, registered=False, post_quantum_auth=True)
        assert (failure.kind, failure.reason, failure.edge_auth) == (
            FailureKind.POST_QUANTUM,
            CLASSICAL,
            True,
        )
        assert failure.shows_banner and not failure.permanent
        # Without post-quantum-auth (a require policy set elsewhere) it is a plain TLS failure.
        other = classify(exc, conn, post_quantum=True, registered=False)
        assert other.kind is FailureKind.TLS and not other.edge_auth


def test_an_ml_dsa_leaf_under_a_classical_ca_is_named() -> None:
    text = client_refusal(ML_DSA_65, ML_DSA_65.codepoint, chain_pq=False)
    assert auth_refusal(text) == (
        "edge presented an ML-DSA-65 certificate whose chain is not all ML-DSA; "
        "post-quantum-auth requires ML-DSA throughout"
    )
    assert auth_refusal("TLS alert handshake_failure: no key-exchange group in common") is None
    key_exchange = ssl.SSLError(1, "[SSL: POST_QUANTUM_REFUSED] refused")
    key_exchange.reason = "POST_QUANTUM_REFUSED"
    failure = classify(
        key_exchange, None, post_quantum=True, registered=False, post_quantum_auth=True
    )
    assert failure.kind is FailureKind.POST_QUANTUM and not failure.edge_auth


def test_the_banner_and_report_say_authentication(capsys: pytest.CaptureFixture[str]) -> None:
    report = HandshakeFailure(0, "127.0.0.1:7844", None, CLASSICAL, "c1", edge_auth=True)
    print_banner(report)
    banner = capsys.readouterr().err
    assert "POST-QUANTUM AUTHENTICATION OF THE EDGE FAILED" in banner
    assert f"error: {CLASSICAL}" in banner and "pq-certfile" in banner
    assert report.as_report()["failed"] == "authentication"
    kex = HandshakeFailure(0, "127.0.0.1:7844", "X25519MLKEM768", "refused", "c1")
    assert kex.as_report()["failed"] == "key-exchange"


def test_the_scope_reads_hop_authentication_failing_closed() -> None:
    hops = [
        {"hop": "visitor-edge", "post_quantum": True, "post_quantum_auth": True},
        {"hop": "edge-connector", "post_quantum": True, "post_quantum_auth": "true"},
        {"hop": "connector-origin", "post_quantum": True},
    ]
    scope = {"type": "http", "extensions": {"pq_quic": {"hops": hops}}}
    read = connection_facts(scope).hops
    assert [h.get("post_quantum_auth") for h in read] == [True, False, None]
