"""``python -m pq_quic_plugin.hypercorn_binding`` is ``hypercorn-pq``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
