"""The TCP layer's import-time checks: complete, exact, and loud when something is missing.

``tls_binding/`` is the only code that uses pyOpenSSL's private names and the C symbols of
``cryptography``'s binding (``OpenSSL._util.lib``); ``tls_binding/version.py`` lists them
(``REQUIRED_INTERNALS``). As for the aioquic and hypercorn bindings, these tests prove the list
is complete (read from the code's syntax tree), that removing any one name makes the check fail
naming it and the package to blame, that the release ranges are enforced, and that an OpenSSL
without ML-KEM stops the layer with the package to upgrade, while policy ``off`` keeps working.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from internals_util import (  # noqa: F401 (autouse fixture)
    checks_enabled,
    is_private,
    stored_on_self,
)
from OpenSSL import SSL
from OpenSSL import _util as openssl_util

import pq_quic_plugin.tls_binding  # noqa: F401  (the checks ran at this import)
from pq_quic_plugin.host_internals import Internal, evidence, problem
from pq_quic_plugin.tls_binding import version

PACKAGE = Path(version.__file__).resolve().parent
LIST = version.REQUIRED_INTERNALS
SKIP_ENV = version.SKIP_ENV
BINDING = openssl_util.lib  # held: one test removes the module global itself


# ------------------------------------------------------------------ the list is complete


def _own_names(tree: ast.Module) -> set[str]:
    """Private names our own classes define: methods, and attributes stored on ``self``."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif (attribute := stored_on_self(node)) is not None:
            own.add(attribute)
    return own


def _uses() -> tuple[dict[str, list[str]], set[str]]:
    """``(private names read on host objects, C symbols read from lib)`` across the package."""
    private: dict[str, list[str]] = {}
    symbols: set[str] = set()
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        own = _own_names(tree)
        for node in ast.walk(tree):
            where = f"tls_binding/{path.name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and node.module and "._" in node.module:
                for alias in node.names:  # names taken from a private module count too
                    private.setdefault(alias.name, []).append(where)
            if not isinstance(node, ast.Attribute):
                continue
            if isinstance(node.value, ast.Name) and node.value.id == "lib":
                symbols.add(node.attr)
            elif is_private(node.attr) and node.attr not in own:
                private.setdefault(node.attr, []).append(where)
    return private, symbols


def test_every_private_name_and_c_symbol_the_layer_uses_is_checked() -> None:
    private, symbols = _uses()
    lib_listed = {i.name for i in LIST if i.owner is BINDING}
    other_listed = {i.name for i in LIST if i.owner is not BINDING}
    unlisted = {n: w for n, w in private.items() if n not in other_listed}
    assert not unlisted, f"add these to tls_binding/version.py REQUIRED_INTERNALS: {unlisted}"
    assert symbols <= lib_listed, f"add these lib symbols: {sorted(symbols - lib_listed)}"
    stale = (lib_listed - symbols) | (other_listed - set(private))
    assert not stale, f"listed but no longer used by tls_binding: {sorted(stale)}"


def test_only_the_tls_binding_touches_pyopenssl_internals() -> None:
    """Everything else in the package goes through tls_binding's public names."""
    offenders = []
    for path in (PACKAGE.parent).rglob("*.py"):
        if PACKAGE in path.parents:
            continue
        text = path.read_text()
        if "OpenSSL._util" in text or "OpenSSL import _util" in text:
            offenders.append(str(path.relative_to(PACKAGE.parent)))
    assert not offenders


# ------------------------------------------------------------------ passes on what is installed


def test_checks_pass_on_the_installed_releases() -> None:
    version.check_tls_binding()
    version.check_mlkem()


def test_instance_attributes_exist_on_real_instances() -> None:
    context = SSL.Context(SSL.TLS_METHOD)
    connection = SSL.Connection(context)  # memory BIOs, like the layer's
    instances = {SSL.Context: context, SSL.Connection: connection}
    for item in LIST:
        if item.instance:
            assert hasattr(instances[item.owner], item.name), item.label


# ------------------------------------------------------------------ fails, naming the name


def _remove(item: Internal, monkeypatch: pytest.MonkeyPatch) -> None:
    found = evidence(item)
    assert found, f"{item.label} is not in the installed release"
    for holder, attribute in found:
        monkeypatch.delattr(holder, attribute)
    assert problem(item) == "missing"


@pytest.mark.parametrize("item", LIST, ids=lambda item: item.label)
def test_the_check_names_each_missing_internal(
    item: Internal, monkeypatch: pytest.MonkeyPatch
) -> None:
    _remove(item, monkeypatch)
    with pytest.raises(version.UnsupportedPyOpenSSLVersion) as info:
        version.check_tls_binding()
    message = str(info.value)
    assert f"{item.label} ({item.kind}, used by {item.used_by}): missing" in message
    if item.owner is BINDING:  # a C symbol: cryptography's binding dropped it
        assert f"cryptography {metadata.version('cryptography')} lacks internals" in message
        assert item.label == f"OpenSSL._util.lib.{item.name}"
        assert "pip install 'cryptography>=46.0,<51.0'" in message
    else:
        assert f"pyOpenSSL {metadata.version('pyOpenSSL')} lacks internals" in message
        assert "pip install 'pyOpenSSL>=26.0,<27.0'" in message
    assert f"{SKIP_ENV}=1" in message


def test_the_escape_hatch_skips_the_release_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(BINDING, "BIO_get_mem_data")
    monkeypatch.setenv(SKIP_ENV, "1")
    version.check_tls_binding("1.0.0", "1.0.0")


@pytest.mark.parametrize(
    ("pyopenssl", "cryptography", "expected"),
    [
        ("25.3.0", "50.0.2", "pip install 'pyOpenSSL>=26.0,<27.0'"),
        ("27.0.0", "50.0.2", "pip install 'pyOpenSSL>=26.0,<27.0'"),
        ("26.4.0", "45.0.7", "pip install 'cryptography>=46.0,<51.0'"),
        ("26.4.0", "51.0.0", "pip install 'cryptography>=46.0,<51.0'"),
    ],
)
def test_untested_releases_fail_with_the_install_hint(
    pyopenssl: str, cryptography: str, expected: str
) -> None:
    with pytest.raises(version.UnsupportedPyOpenSSLVersion) as info:
        version.check_tls_binding(pyopenssl, cryptography)
    assert expected in str(info.value)
    assert "TLS layer for TCP" in str(info.value)


# ------------------------------------------------------------------ ML-KEM


def test_an_openssl_without_the_group_stops_the_layer_with_what_to_upgrade() -> None:
    """The real OpenSSL refusing a group name it does not implement (a draft Kyber hybrid),
    exactly as an OpenSSL older than 3.5 refuses X25519MLKEM768."""
    with pytest.raises(version.OpenSSLWithoutMLKEM) as info:
        version.check_mlkem("X25519Kyber768Draft00")
    message = str(info.value)
    assert f"cryptography {metadata.version('cryptography')} runs on OpenSSL 4." in message
    assert "pip install --upgrade cryptography pyOpenSSL" in message
    assert "OpenSSL 3.5 or later" in message
    assert isinstance(info.value, ImportError)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != SKIP_ENV}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=PACKAGE.parent.parent,
        check=True,
    )


def test_a_missing_symbol_stops_post_quantum_but_not_policy_off() -> None:
    code = (
        "import OpenSSL._util as u; del u.lib.SSL_CTX_set1_curves_list\n"
        "import pq_quic_plugin\n"
        "ctx = pq_quic_plugin.ssl_context('off', server_side=False)\n"
        "print(type(ctx).__module__, type(ctx).__name__)\n"
        "try:\n"
        "    pq_quic_plugin.ssl_context('prefer', server_side=False)\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__); print(exc)\n"
    )
    out = _python(code).stdout
    assert out.startswith("ssl SSLContext\nUnsupportedPyOpenSSLVersion\n"), out
    assert "OpenSSL._util.lib.SSL_CTX_set1_curves_list" in out


def test_without_ml_kem_prefer_fails_at_start_up_and_off_still_works() -> None:
    """Simulates an OpenSSL older than 3.5 in a child process: its group-list call refuses
    every ML-KEM name, as such an OpenSSL does."""
    code = (
        "import OpenSSL._util as u\n"
        "real = u.lib.SSL_CTX_set1_curves_list\n"
        "u.lib.SSL_CTX_set1_curves_list = (\n"
        "    lambda ctx, names: 0 if b'MLKEM' in names.upper() else real(ctx, names))\n"
        "import pq_quic_plugin\n"
        "pq_quic_plugin.ssl_context('off', server_side=True)\n"
        "try:\n"
        "    pq_quic_plugin.ssl_context('prefer', server_side=True)\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__); print(exc)\n"
    )
    out = _python(code).stdout
    assert out.startswith("OpenSSLWithoutMLKEM\n"), out
    assert "pip install --upgrade cryptography pyOpenSSL" in out
