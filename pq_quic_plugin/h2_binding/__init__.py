"""The h2 binding: what ``h2`` and ``hyperframe`` lack for moving bulk data, done with the
fewest private names (docs/binding.md, "The h2 binding").

Importing this package checks that the installed h2 and hyperframe are releases the binding was
tested with and still have every internal it uses (:mod:`.version`); it changes nothing until a
program calls :func:`apply` (the tunnel's edge and connector, and ``hypercorn-pq``, do).
"""

from .version import check_h2_binding

check_h2_binding()

from .facade import applied, apply, restore  # noqa: E402
from .stream_length import client_connection  # noqa: E402

__all__ = ["applied", "apply", "client_connection", "restore"]
