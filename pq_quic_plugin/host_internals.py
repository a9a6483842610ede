"""The import-time check every binding runs: is the host library a tested release, and is every
one of its names we use there?

aioquic, hypercorn and pyOpenSSL have no API for what the bindings do (replace the TLS key
exchange, pace a stream's receive window, harden hypercorn's HTTP/3 loop, choose TLS groups and
check host names over TCP), so the bindings use private and undocumented names of theirs. A
release that renames one would otherwise fail late: in the middle of a handshake or a request,
or, worst of all for key exchange, quietly classical. Each binding therefore lists every such
name once (``REQUIRED_INTERNALS`` in ``aioquic_binding/version.py``,
``hypercorn_binding/version.py`` and ``tls_binding/version.py``) and checks the list at import.

Many of the names are instance attributes that exist only after ``__init__`` ran, and building
the instances needs sockets and event loops. So an instance attribute counts as present when a
method of its class, or of a base class, stores it (``STORE_ATTR`` in the method's bytecode,
following ``__wrapped__`` through wrappers such as the bindings' own). Reading bytecode rather
than source keeps the check cheap and working for installs without ``.py`` files.

The C functions and constants of ``cryptography``'s OpenSSL binding count too: a
``cryptography`` release may drop any of them, and they live on a module object named just
``lib``, so their entries carry an ``owner_label`` that says whose ``lib`` it is.

Every binding refuses a release outside its tested range, or one that lacks a name, with the
same wording and install hint (:func:`check_release`), and all skip the check when
``PQ_QUIC_SKIP_VERSION_CHECK=1``. A binding over two libraries, one the other's dependency
(h2 on hyperframe, pyOpenSSL on cryptography), checks both with :func:`check_releases`.

This module lives outside the bindings so that importing one binding's check does not import
another binding.
"""

from __future__ import annotations

import dis
import functools
import inspect
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from types import CodeType, ModuleType
from typing import Any

__all__ = [
    "SKIP_ENV",
    "Internal",
    "Release",
    "check_release",
    "check_releases",
    "evidence",
    "names_of",
    "parse_version",
    "problem",
    "report",
]

SKIP_ENV = "PQ_QUIC_SKIP_VERSION_CHECK"


@dataclass(frozen=True)
class Internal:
    """One name of a host library that a binding module relies on."""

    owner: type | ModuleType
    name: str
    #: The binding module that uses it, named in the failure message.
    used_by: str
    #: Set on instances by a method (usually ``__init__``), so absent from the class itself.
    instance: bool = False
    #: For a callable the binding calls or wraps positionally: its leading parameter names.
    params: tuple[str, ...] = ()
    #: How the owner is named in messages when its own name says too little (``lib``).
    owner_label: str = ""

    @property
    def label(self) -> str:
        owner = self.owner
        if self.owner_label:
            return f"{self.owner_label}.{self.name}"
        if isinstance(owner, ModuleType):
            return f"{owner.__name__}.{self.name}"
        return f"{owner.__module__}.{owner.__qualname__}.{self.name}"

    @property
    def kind(self) -> str:
        if isinstance(self.owner, ModuleType):
            return "module global"
        return "instance attribute" if self.instance else "class attribute"


def names_of(
    owner: type | ModuleType,
    used_by: str,
    attributes: str = "",
    instance: str = "",
    *,
    owner_label: str = "",
) -> tuple[Internal, ...]:
    """The names of ``owner`` that ``used_by`` relies on, each kind as one space-separated
    string: ``attributes`` of the class or module itself, ``instance`` attributes set by a
    method. Keeps the bindings' lists to one line per owner and user instead of one per
    name."""
    return tuple(
        Internal(owner, name, used_by, owner_label=owner_label) for name in attributes.split()
    ) + tuple(
        Internal(owner, name, used_by, instance=True, owner_label=owner_label)
        for name in instance.split()
    )


def _classes(owner: type) -> Iterator[type]:
    """The owner's MRO without ``object`` (whose ``__init__`` would make every check pass)."""
    return (cls for cls in owner.__mro__ if cls is not object)


def _functions(value: Any) -> Iterator[Any]:
    """The plain functions behind a class-dict entry, through wrappers and descriptors."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        candidates = [value.fget, value.fset, value.fdel]
    else:
        candidates = [value]
    for func in candidates:
        while func is not None and hasattr(func, "__code__"):
            yield func
            func = getattr(func, "__wrapped__", None)


@functools.cache
def _stored_names(code: CodeType) -> frozenset[str]:
    """Every attribute name this code (or a function nested in it) assigns: ``x.<name> = ...``."""
    names = {ins.argval for ins in dis.get_instructions(code) if ins.opname == "STORE_ATTR"}
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _stored_names(const)
    return frozenset(names)


def _mentions(code: CodeType, name: str) -> bool:
    """Cheap pre-test: attribute names a function stores are among its ``co_names``."""
    return name in code.co_names or any(
        _mentions(const, name) for const in code.co_consts if isinstance(const, CodeType)
    )


def _stores(value: Any, name: str) -> bool:
    return any(
        _mentions(func.__code__, name) and name in _stored_names(func.__code__)
        for func in _functions(value)
    )


def _methods_first_init(cls: type) -> list[tuple[str, Any]]:
    """A class's dict entries, ``__init__`` first: most instance attributes are set there."""
    items = list(vars(cls).items())
    items.sort(key=lambda item: item[0] != "__init__")
    return items


def _present(item: Internal) -> bool:
    """:func:`evidence` is not empty; stops at the first hit, since this runs at every import."""
    owner = item.owner
    if isinstance(owner, ModuleType):
        return item.name in vars(owner)
    if any(item.name in vars(cls) for cls in _classes(owner)):
        return True
    return item.instance and any(
        _stores(value, item.name)
        for cls in _classes(owner)
        for _, value in _methods_first_init(cls)
    )


def evidence(item: Internal) -> list[tuple[Any, str]]:
    """Where the name was found, as ``(holder, attribute)`` pairs: class-dict entries named
    ``item.name``, and (for instance attributes) the methods that store it. Removing all of them
    removes the name, which is what the tests do."""
    owner = item.owner
    if isinstance(owner, ModuleType):
        return [(owner, item.name)] if item.name in vars(owner) else []
    found: list[tuple[Any, str]] = [
        (cls, item.name) for cls in _classes(owner) if item.name in vars(cls)
    ]
    if item.instance:
        found += [
            (cls, attr)
            for cls in _classes(owner)
            for attr, value in vars(cls).items()
            if _stores(value, item.name)
        ]
    return found


def problem(item: Internal) -> str | None:
    """Why ``item`` is unusable in the installed library, or None when it is fine."""
    if not _present(item):
        return "missing"
    if item.params:
        try:
            signature = inspect.signature(getattr(item.owner, item.name))
        except (TypeError, ValueError):
            return "its signature cannot be read"
        leading = tuple(signature.parameters)[: len(item.params)]
        if leading != item.params:
            return (
                f"parameters changed: expected ({', '.join(item.params)}, ...), "
                f"found ({', '.join(leading)}, ...)"
            )
    return None


def report(internals: Iterable[Internal]) -> list[str]:
    """One line per unusable name: what it is, why, and which binding module needs it."""
    lines = []
    for item in internals:
        why = problem(item)
        if why is not None:
            lines.append(f"{item.label} ({item.kind}, used by {item.used_by}): {why}")
    return lines


def parse_version(version: str) -> tuple[int, ...]:
    """``"1.7.2"`` -> ``(1, 7, 2)``; suffixes such as ``rc1`` or ``.dev0`` are ignored."""
    parts = []
    for piece in version.split(".")[:3]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits or 0))
    return tuple(parts)


def check_release(
    library: str,
    installed: Callable[[], str],
    supported: tuple[tuple[int, int], tuple[int, int]],
    required: Iterable[Internal],
    *,
    user: str,
    error: type[ImportError],
    version: str | None = None,
) -> None:
    """Raise ``error`` unless ``library`` (also its pip name) is in the ``supported`` range
    [minimum, maximum) and has every name in ``required``; ``user`` names the binding in the
    message. ``version`` overrides ``installed()``, which is not called when the check is
    skipped (:data:`SKIP_ENV`)."""
    if os.environ.get(SKIP_ENV) == "1":
        return
    found = version if version is not None else installed()
    low, high = supported
    wanted = f">={low[0]}.{low[1]},<{high[0]}.{high[1]}"
    hint = (
        f"Install a supported release: pip install '{library}{wanted}' "
        f"(or set {SKIP_ENV}=1 to try anyway, at your own risk)."
    )
    if not (low <= parse_version(found)[:2] < high):
        raise error(
            f"{user} supports {library} {wanted}, found {library} {found}. It relies on "
            f"private internals of {library} that change between releases. {hint}"
        )
    missing = report(required)
    if missing:
        raise error(
            f"{library} {found} lacks internals that {user} uses:\n  "
            + "\n  ".join(missing)
            + f"\nThis {library} differs from the releases the binding was tested with. {hint}"
        )


@dataclass(frozen=True)
class Release:
    """One library of a two-library binding: its pip (and distribution) name, the tested range
    [minimum, maximum), and a version to check instead of the installed one (tests)."""

    library: str
    supported: tuple[tuple[int, int], tuple[int, int]]
    version: str | None = None


def check_releases(
    dependency: Release,
    library: Release,
    internals: Iterable[Internal],
    in_dependency: Callable[[Internal], bool],
    *,
    user: str,
    error: type[ImportError],
) -> None:
    """:func:`check_release` for a library and the dependency it is built on. The dependency is
    checked first, with the names ``in_dependency`` says are its own, since a wrong dependency
    is the cause to fix; every other name is blamed on ``library``."""
    items = tuple(internals)
    theirs = tuple(item for item in items if in_dependency(item))
    ours = tuple(item for item in items if item not in theirs)
    for release, required in ((dependency, theirs), (library, ours)):
        check_release(
            release.library,
            functools.partial(metadata.version, release.library),
            release.supported,
            required,
            user=user,
            error=error,
            version=release.version,
        )
