"""``python -m pq_quic_plugin.tunnel`` is ``pq-tunnel``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
