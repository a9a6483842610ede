"""The development PKI in ML-DSA (``devcert --sig``), and ``configure_auth``'s refusals."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from aioquic import tls
from aioquic.quic.configuration import QuicConfiguration
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from mldsa_util import PARAMETER_SETS

from pq_quic_plugin import configure, configure_auth
from pq_quic_plugin.aioquic_binding.auth_config import auth_settings_of
from pq_quic_plugin.auth_policy import ML_DSA_CERTIFICATE_OIDS, AuthPolicy
from pq_quic_plugin.devcert import DevPKI, main, make_dev_pki

KEY_CLASS = {
    "ml-dsa-44": mldsa.MLDSA44PublicKey,
    "ml-dsa-65": mldsa.MLDSA65PublicKey,
    "ml-dsa-87": mldsa.MLDSA87PublicKey,
}


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_cli_without_sig_writes_exactly_the_ecdsa_set_as_before(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    leaf = _load(tmp_path / "cert.pem")
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.signature_algorithm_oid.dotted_string not in ML_DSA_CERTIFICATE_OIDS


@pytest.mark.parametrize("sig", [s for s, _ in PARAMETER_SETS])
def test_cli_with_sig_writes_an_ml_dsa_set_next_to_the_ecdsa_one(tmp_path: Path, sig: str) -> None:
    assert main([str(tmp_path), "--sig", sig]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {
        "ca.pem",
        "cert.pem",
        "key.pem",
        f"{sig}-ca.pem",
        f"{sig}-cert.pem",
        f"{sig}-key.pem",
        "cas.pem",
    }
    ca, leaf = _load(tmp_path / f"{sig}-ca.pem"), _load(tmp_path / f"{sig}-cert.pem")
    for cert in (ca, leaf):
        assert cert.signature_algorithm_oid.dotted_string in ML_DSA_CERTIFICATE_OIDS
        assert isinstance(cert.public_key(), KEY_CLASS[sig])
    assert stat.S_IMODE((tmp_path / f"{sig}-key.pem").stat().st_mode) == 0o600
    # The chain verifies for both URLs through aioquic's own check (OpenSSL in cryptography).
    for name in ("localhost", "127.0.0.1"):
        tls.verify_certificate(leaf, server_name=name, cafile=str(tmp_path / f"{sig}-ca.pem"))
    # cas.pem trusts both sets.
    every = tls.load_pem_x509_certificates((tmp_path / "cas.pem").read_bytes())
    ecdsa_leaf = _load(tmp_path / "cert.pem")
    assert [c.subject for c in every] == [ecdsa_leaf.issuer, ca.subject]
    tls.verify_certificate(ecdsa_leaf, server_name="localhost", cafile=str(tmp_path / "cas.pem"))
    tls.verify_certificate(leaf, server_name="localhost", cafile=str(tmp_path / "cas.pem"))


def test_unknown_signature_algorithm_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="use one of: ecdsa-p256, ml-dsa-44"):
        make_dev_pki(tmp_path, sig="ml-dsa-99")
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--sig", "ecdsa-p384"])


# ------------------------------------------------------------------------- configure_auth


@pytest.fixture(scope="module")
def ml65(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    return make_dev_pki(tmp_path_factory.mktemp("ml65"), sig="ml-dsa-65")


def test_require_server_without_an_ml_dsa_certificate_is_refused_at_configure(pki: DevPKI) -> None:
    config = QuicConfiguration(is_client=False)
    config.load_cert_chain(str(pki.cert), str(pki.key))
    with pytest.raises(ValueError, match="'require' needs an ML-DSA certificate"):
        configure_auth(config, "require")


def test_first_pair_fills_an_empty_configuration(pki: DevPKI, ml65: DevPKI) -> None:
    config = QuicConfiguration(is_client=False)
    configure_auth(config, "require", certificates=[(ml65.cert, ml65.key), (pki.cert, pki.key)])
    assert config.certificate == _load(ml65.cert)
    settings = auth_settings_of(config)
    assert settings is not None and settings.policy is AuthPolicy.REQUIRE
    assert [c.certificate for c in settings.credentials] == [_load(pki.cert)]


def test_configure_auth_refuses_what_could_never_work(pki: DevPKI, ml65: DevPKI) -> None:
    client = QuicConfiguration(is_client=True)
    with pytest.raises(ValueError, match="for servers"):
        configure_auth(client, certificates=[(ml65.cert, ml65.key)])
    stock = configure(QuicConfiguration(is_client=True), policy="off")
    with pytest.raises(ValueError, match="key-exchange policy 'off'"):
        configure_auth(stock, "prefer")
    server = QuicConfiguration(is_client=False)
    with pytest.raises(ValueError, match="does not belong"):
        configure_auth(server, certificates=[(ml65.cert, pki.key)])
    with pytest.raises(ValueError, match="unknown authentication policy"):
        configure_auth(server, "sometimes")
