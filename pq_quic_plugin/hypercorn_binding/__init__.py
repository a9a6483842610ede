"""hypercorn ``--pq``: the CLI wrapper, the Config subclass, and the scope facts.

Importing this package installs the hypercorn hooks in the current process.
"""

from .config import PostQuantumConfig, post_quantum

__all__ = ["PostQuantumConfig", "post_quantum"]
