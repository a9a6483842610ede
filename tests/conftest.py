"""Shared fixtures: a throw-away PKI (CA plus a CA:FALSE leaf, as qh3 and Chromium want).

The PKI is the package's development PKI (``pq_quic_plugin.devcert``): qh3 (and so niquests)
refuses a self-signed ``CA:TRUE`` server certificate and Chromium wants a proper serverAuth leaf.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pq_quic_plugin.devcert import DevPKI, make_dev_pki

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    return make_dev_pki(tmp_path_factory.mktemp("pki"))
