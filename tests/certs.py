"""The tests' PKI is the package's development PKI (a small CA plus a CA:FALSE leaf).

qh3 (and so niquests) refuses a self-signed ``CA:TRUE`` server certificate and Chromium wants a
proper serverAuth leaf; ``pq_quic_plugin.devcert`` makes what every peer accepts.
"""

from pq_quic_plugin.devcert import DevPKI as TestPKI
from pq_quic_plugin.devcert import make_dev_pki as make_test_pki

__all__ = ["TestPKI", "make_test_pki"]
