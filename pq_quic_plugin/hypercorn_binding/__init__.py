"""hypercorn ``--pq``: the CLI wrapper, the Config subclass, and the scope facts.

Importing this package first checks that the installed hypercorn is one the binding was tested
with and still has every internal it uses (:mod:`.version`), then installs the hypercorn hooks
in the current process.
"""

from .version import check_hypercorn_version

check_hypercorn_version()

from .config import PostQuantumConfig, post_quantum  # noqa: E402

__all__ = ["PostQuantumConfig", "post_quantum"]
