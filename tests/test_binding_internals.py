"""The bindings' import-time internals checks: complete, exact, and loud when a name is gone.

Each binding lists the host-library names it relies on (``REQUIRED_INTERNALS`` in
``aioquic_binding/version.py`` and ``hypercorn_binding/version.py``). These tests prove that

* the list is complete: every private name the binding's code touches is on it, and nothing on
  it is stale (read from the code's syntax tree, so a new ``obj._name`` fails here);
* the check passes on the installed releases, and the instance attributes it finds through
  bytecode really exist on real instances;
* for every entry, removing that one name from the installed library makes the check fail with
  a message naming it, the version found and what to install;
* the version range is enforced with an install hint, and an import really fails.
"""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aioquic
import pytest
from aioquic import tls
from aioquic.asyncio import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3Connection
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from hypercorn.asyncio.tcp_server import TCPServer as AsyncioTCPServer
from hypercorn.asyncio.worker_context import EventWrapper
from hypercorn.asyncio.worker_context import WorkerContext as AsyncioWorkerContext
from hypercorn.config import Config
from hypercorn.protocol.h2 import H2Protocol, StreamBuffer
from hypercorn.protocol.h3 import H3Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.protocol.quic import QuicProtocol
from hypercorn.protocol.quic import _Connection as QuicConnectionEntry
from internals_util import (  # noqa: F401 (autouse fixture)
    checks_enabled,
    is_private,
    stored_on_self,
)
from quic_util import sans_io_pair

import pq_quic_plugin.hypercorn_binding  # noqa: F401  (installs the hooks, as in production)
from pq_quic_plugin.aioquic_binding import install, uninstall
from pq_quic_plugin.aioquic_binding import version as aioquic_version
from pq_quic_plugin.host_internals import Internal, evidence, problem
from pq_quic_plugin.hypercorn_binding import version as hypercorn_version

PACKAGE = Path(pq_quic_plugin.hypercorn_binding.__file__).resolve().parent.parent
AIOQUIC_LIST = aioquic_version.REQUIRED_INTERNALS
HYPERCORN_LIST = hypercorn_version.REQUIRED_INTERNALS
SKIP_ENV = aioquic_version.SKIP_ENV


# ------------------------------------------------------------------ the lists are complete


def _own_names(tree: ast.Module) -> set[str]:
    """Private names our own base-less classes define (``self._x`` of ReceiveCredit is ours)."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and not node.bases:
            for inner in ast.walk(node):
                if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    own.add(inner.name)
                elif (attribute := stored_on_self(inner)) is not None:
                    own.add(attribute)
    return own


def _private_uses(package: str) -> dict[str, list[str]]:
    """Private names the package's code reads, writes or overrides on host-library objects
    (``x._name``, ``getattr(x, "_name")``, ``def _name`` in a subclass of a host class), with
    where; our own ``_pq_*`` names excluded."""
    uses: dict[str, list[str]] = {}
    for path in sorted((PACKAGE / package).glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        own = _own_names(tree)
        overrides = {
            id(item)
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and node.bases
            for item in node.body
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
        }
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif id(node) in overrides:
                name = node.name  # type: ignore[attr-defined]
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                name = node.args[1].value
            if name and is_private(name) and not name.startswith("_pq_") and name not in own:
                uses.setdefault(name, []).append(f"{package}/{path.name}:{node.lineno}")
    return uses


@pytest.mark.parametrize(
    ("package", "internals"),
    [("aioquic_binding", AIOQUIC_LIST), ("hypercorn_binding", HYPERCORN_LIST)],
)
def test_every_private_name_the_binding_uses_is_checked(
    package: str, internals: tuple[Internal, ...]
) -> None:
    """Also keeps private aioquic names out of hypercorn_binding (its list names hypercorn
    objects only): those must go through aioquic_binding.facade."""
    uses = _private_uses(package)
    listed = {item.name for item in internals}
    unlisted = {name: where for name, where in uses.items() if name not in listed}
    assert not unlisted, f"add these to {package}/version.py REQUIRED_INTERNALS: {unlisted}"
    stale = {item.label for item in internals if is_private(item.name)} - {
        item.label for item in internals if item.name in uses
    }
    assert not stale, f"listed but no longer used by {package}: {sorted(stale)}"


# ------------------------------------------------------------------ passes on what is installed


def test_checks_pass_on_the_installed_releases() -> None:
    aioquic_version.check_aioquic_version()
    hypercorn_version.check_hypercorn_version()  # with hypercorn-pq's hooks installed


def test_aioquic_check_sees_through_the_installed_hook() -> None:
    """While ``install()`` wraps ``QuicConnection._initialize``, ``tls`` is still found."""
    install("prefer")
    try:
        aioquic_version.check_aioquic_version()
    finally:
        uninstall()


def _handshaken(pki: Any) -> tuple[QuicConnection, QuicConnection]:
    """A client and a server that completed a stock aioquic handshake in memory (sans-IO), so
    attributes set during the handshake (``Context._next_dec_key``) exist too."""
    client, server = sans_io_pair(pki)
    client.connect(("127.0.0.1", 4433), now=0.0)
    for _ in range(8):
        for data, _addr in client.datagrams_to_send(now=0.0):
            server.receive_datagram(data, ("127.0.0.1", 50000), now=0.0)
        for data, _addr in server.datagrams_to_send(now=0.0):
            client.receive_datagram(data, ("127.0.0.1", 4433), now=0.0)
    assert client._handshake_complete and server._handshake_complete
    return client, server


def _real_instances(pki: Any) -> Iterator[Any]:
    """Real objects of the owners of instance attributes (no network, no running server)."""
    client, server = _handshaken(pki)
    stream_id = client.get_next_available_stream_id()
    client.send_stream_data(stream_id, b"x")
    stream = client._streams[stream_id]
    config = Config()
    context = AsyncioWorkerContext(None)
    tcp_config = Config()
    tcp_config.certfile, tcp_config.keyfile = str(pki.cert), str(pki.key)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    async def send(*args: Any) -> None:
        pass

    async def inside_a_loop() -> list[Any]:
        loop = asyncio.get_running_loop()
        return [
            QuicConnectionProtocol(_handshaken(pki)[0]),
            QuicServer(configuration=QuicConfiguration(is_client=False)),
            AsyncioTCPServer(app, loop, config, context, None, None, None),  # type: ignore[arg-type]
        ]

    yield from (client, server, client.tls, server.tls, stream, stream.sender, stream.receiver)
    yield client._loss  # its round-trip time tunes receive windows (flow_control.py)
    yield H3Connection(_handshaken(pki)[0])
    yield StreamBuffer(EventWrapper)
    yield context
    yield HTTPStream(app, config, context, None, False, None, None, send, 0)  # type: ignore[arg-type]
    yield H2Protocol(app, config, context, None, None, False, None, None, send)  # type: ignore[arg-type]
    yield H3Protocol(app, config, context, None, None, None, None, _handshaken(pki)[1], send)  # type: ignore[arg-type]
    yield QuicProtocol(app, tcp_config, context, None, None, None, send)  # type: ignore[arg-type]
    task = context.single_task_class()  # quic_guard.py releases a fired timer's task
    yield QuicConnectionEntry(cids=set(), quic=server, task=task)
    yield task
    yield from asyncio.run(inside_a_loop())


def test_instance_attributes_found_in_bytecode_exist_on_real_instances(pki: Any) -> None:
    instances = list(_real_instances(pki))
    checked = set()
    for item in AIOQUIC_LIST + HYPERCORN_LIST:
        if not item.instance:
            continue
        same_type = [instance for instance in instances if type(instance) is item.owner]
        if same_type:  # some are side-specific: Context._next_dec_key exists on a server only
            assert any(hasattr(instance, item.name) for instance in same_type), item.label
            checked.add(item.label)
    uncovered = {i.label for i in AIOQUIC_LIST + HYPERCORN_LIST if i.instance} - checked
    # Only the trio worker's objects are not built here (they need a trio stream).
    assert all(".trio." in label for label in uncovered), uncovered


# ------------------------------------------------------------------ fails, naming the name


def _remove(item: Internal, monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the name out of the installed library: every class-dict entry of that name and
    every method that sets it on instances (a release that dropped it would have neither)."""
    found = evidence(item)
    assert found, f"{item.label} is not in the installed release"
    for holder, attribute in found:
        monkeypatch.delattr(holder, attribute)
    assert problem(item) == "missing"


def _aioquic_check() -> tuple[type[Exception], Any, str, str]:
    return (
        aioquic_version.UnsupportedAioquicVersion,
        aioquic_version.check_aioquic_version,
        f"aioquic {aioquic.__version__}",
        "aioquic>=1.7,<1.8",
    )


def _hypercorn_check() -> tuple[type[Exception], Any, str, str]:
    from importlib import metadata

    return (
        hypercorn_version.UnsupportedHypercornVersion,
        hypercorn_version.check_hypercorn_version,
        f"hypercorn {metadata.version('hypercorn')}",
        "hypercorn>=0.18,<0.19",
    )


@pytest.mark.parametrize(
    ("item", "binding"),
    [(item, _aioquic_check) for item in AIOQUIC_LIST]
    + [(item, _hypercorn_check) for item in HYPERCORN_LIST],
    ids=lambda value: value.label if isinstance(value, Internal) else value.__name__[1:-6],
)
def test_each_check_names_each_missing_internal(
    item: Internal, binding: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    error, check, release, pin = binding()
    _remove(item, monkeypatch)
    with pytest.raises(error) as info:
        check()
    message = str(info.value)
    assert f"{item.label} ({item.kind}, used by {item.used_by}): missing" in message
    assert f"{release} lacks internals" in message
    assert f"pip install '{pin}'" in message and f"{SKIP_ENV}=1" in message


def test_a_changed_positional_signature_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """hooks.py takes ProtocolWrapper's ``send`` by position: a reordered signature is caught."""
    from hypercorn.protocol import ProtocolWrapper

    def reordered(self, app, config, context, task_group, state, ssl, client, alpn, server, send):  # type: ignore[no-untyped-def]  # noqa: E501
        pass

    monkeypatch.setattr(ProtocolWrapper, "__init__", reordered)
    with pytest.raises(hypercorn_version.UnsupportedHypercornVersion) as info:
        hypercorn_version.check_hypercorn_version()
    assert "hypercorn.protocol.ProtocolWrapper.__init__" in str(info.value)
    assert "parameters changed" in str(info.value)


def test_the_escape_hatch_skips_both_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(tls.Context, "_set_state")
    monkeypatch.delattr(H2Protocol, "_flush")
    monkeypatch.setenv(SKIP_ENV, "1")
    aioquic_version.check_aioquic_version()
    hypercorn_version.check_hypercorn_version()


# ------------------------------------------------------------------ versions


@pytest.mark.parametrize(
    ("binding", "found"),
    [(_aioquic_check, found) for found in ("1.6.9", "1.8.0", "2.0.0")]
    + [(_hypercorn_check, found) for found in ("0.17.2", "0.19.0", "1.0.0")],
    ids=lambda value: value if isinstance(value, str) else value.__name__[1:-6],
)
def test_an_unsupported_version_fails_with_the_install_hint(binding: Any, found: str) -> None:
    error, check, release, pin = binding()
    library = release.split()[0]
    with pytest.raises(error) as info:
        check(found)
    message = str(info.value)
    assert f"found {library} {found}" in message
    assert f"pip install '{pin}'" in message


def test_release_candidates_count_as_their_release() -> None:
    assert aioquic_version.parse_version("1.7.0rc1") == (1, 7, 0)
    assert aioquic_version.parse_version("0.18.0.dev3") == (0, 18, 0)
    aioquic_version.check_aioquic_version("1.7.0rc1")
    hypercorn_version.check_hypercorn_version("0.18.1")


@pytest.mark.parametrize(
    ("removal", "module", "error", "label"),
    [
        (
            "import aioquic.tls as t; del t.Context._set_state",
            "pq_quic_plugin",
            "UnsupportedAioquicVersion",
            "aioquic.tls.Context._set_state",
        ),
        (
            "import hypercorn.protocol.h2 as h; del h.H2Protocol._flush",
            "pq_quic_plugin.hypercorn_binding",
            "UnsupportedHypercornVersion",
            "hypercorn.protocol.h2.H2Protocol._flush",
        ),
    ],
)
def test_importing_the_binding_fails_when_an_internal_is_gone(
    removal: str, module: str, error: str, label: str
) -> None:
    code = (
        f"{removal}\n"
        "try:\n"
        f"    import {module}\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__); print(exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != SKIP_ENV}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=PACKAGE.parent,
        check=True,
    )
    assert result.stdout.startswith(error), result.stdout + result.stderr
    assert label in result.stdout
