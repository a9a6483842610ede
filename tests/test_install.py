"""The library hook: install() reaches every connection; uninstall() restores stock aioquic.

Runs in a fresh interpreter so that no configured configuration from other tests keeps the
binding's wrapper alive.
"""

from __future__ import annotations

from script_util import run_script

SCRIPT = """
import asyncio, gc, json, sys, types
from pathlib import Path
from aioquic import tls
from aioquic.quic.connection import QuicConnection
from quic_util import STOCK, client_configuration, handshake, running_server, server_configuration
import pq_quic_plugin

pki = types.SimpleNamespace(
    cert=Path(sys.argv[1]), key=Path(sys.argv[2]), ca_cert=Path(sys.argv[3])
)
original = QuicConnection._initialize
stock_groups = list(tls.Context(is_client=True)._supported_groups)

def stock_handshake():
    # Plain aioquic configurations: the program knows nothing about post-quantum.
    out = handshake(pki, server=STOCK, client=STOCK)
    return out, out.server

seen = {}
async def probe():
    # A stock client: what does its TLS context offer?
    from aioquic.asyncio import connect
    async with running_server(server_configuration(pki)) as srv:
        async with connect("127.0.0.1", srv.port, configuration=client_configuration(pki)) as c:
            seen["class"] = type(c._quic.tls).__name__
            seen["groups"] = [int(g) for g in c._quic.tls._supported_groups]

out = {}
pq_quic_plugin.install("prefer")
result, server = stock_handshake()
out["installed"] = {"client": result.group, "server": server[0]["group"],
                    "patched": QuicConnection._initialize is not original}
pq_quic_plugin.uninstall()
gc.collect()
result, server = stock_handshake()
asyncio.run(probe())
out["uninstalled"] = {"client": result.group, "server": server[0]["group"],
                      "restored": QuicConnection._initialize is original,
                      "class": seen["class"], "offers_stock_groups": seen["groups"] == stock_groups}
print(json.dumps(out))
"""


def test_install_then_uninstall_leaves_aioquic_as_it_was(pki) -> None:
    out = run_script(SCRIPT, pki)
    assert out["installed"] == {
        "client": "X25519MLKEM768",
        "server": "X25519MLKEM768",
        "patched": True,
    }
    assert out["uninstalled"] == {
        "client": None,
        "server": None,
        "restored": True,
        "class": "Context",
        "offers_stock_groups": True,
    }


def test_version_check_names_the_supported_range() -> None:
    import pytest

    from pq_quic_plugin.aioquic_binding.version import (
        UnsupportedAioquicVersion,
        check_aioquic_version,
    )

    check_aioquic_version()  # the installed one is supported
    with pytest.raises(UnsupportedAioquicVersion) as info:
        check_aioquic_version("1.2.0")
    message = str(info.value)
    assert "aioquic >=1.7,<1.8" in message and "found aioquic 1.2.0" in message
    assert "pip install" in message
    with pytest.raises(UnsupportedAioquicVersion):
        check_aioquic_version("2.0.0")
