"""Shared fixtures: a throw-away PKI (CA plus a CA:FALSE leaf, as qh3 and Chromium want)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from certs import make_test_pki  # noqa: E402


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_test_pki(tmp_path_factory.mktemp("pki"))
