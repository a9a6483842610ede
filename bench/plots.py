"""Drawing a benchmark's figure with matplotlib, which is optional (``pip install '.[bench]'``).

Every figure carries a caption naming the machine and versions, because a PNG copied out of
docs/bench/ loses the JSON that says where its numbers came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .results import display_path


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None (with a note) when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib is not installed (pip install '.[bench]'): no plot drawn")
        return None
    return plt


def save_figure(plt: Any, fig: Any, out_dir: Path, name: str, caption: str = "") -> Path:
    path = out_dir / f"{name}.png"
    if caption:
        fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=8, color="#444444")
    fig.tight_layout(rect=(0, 0.03 if caption else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"  wrote {display_path(path)}")
    return path


def machine_caption(machine: dict[str, Any]) -> str:
    """One line for a figure's foot from :func:`bench.machine.machine_info`'s record."""
    v = machine["versions"]
    return (
        f"{machine['cpu_model']}, {machine['cores']} cores; Python {machine['python']}, "
        f"aioquic {v['aioquic']}, cryptography {v['cryptography']}, qh3 {v['qh3']}"
    )


def tls_caption(result: dict[str, Any]) -> str:
    """:func:`machine_caption` plus what the TCP benchmarks compare: pyOpenSSL on
    ``cryptography``'s OpenSSL against Python's ``ssl`` on the system's, and the commit."""
    m = result["machine"]
    commit = result.get("source", {}).get("commit", "?")
    return (
        f"{machine_caption(m)}; pyOpenSSL {m['versions'].get('pyOpenSSL')} on {m['openssl']}, "
        f"ssl on {m.get('openssl_of_python_ssl')}; commit {commit}"
    )


def median_to_p90(ax: Any, medians: list[float], y: Any, p90: list[float], **kwargs: Any) -> None:
    """Whiskers from each horizontal bar's median out to its p90 (one-sided: the tail is what
    a reader of these latencies worries about). ``kwargs`` go to ``errorbar`` (a ``label``)."""
    ax.errorbar(
        medians,
        y,
        xerr=[[0] * len(y), [p - m for p, m in zip(p90, medians, strict=True)]],
        fmt="none",
        ecolor="black",
        capsize=3,
        lw=1,
        **kwargs,
    )
