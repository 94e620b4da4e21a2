"""Number formatting and chart plumbing shared by the benchmark reports (text, report.md, charts)."""
from __future__ import annotations

from pathlib import Path

from pgti.outputs import save_figure_output


def gib(n) -> str:
    """Bytes as MiB below 1 GiB, else GiB; "-" for None."""
    if n is None:
        return "-"
    return f"{n / 2**20:.1f} MiB" if abs(n) < 2**30 else f"{n / 2**30:.2f} GiB"


def gib_column(n) -> str:
    """Bytes as GiB, fixed width: an aligned column of a text table."""
    return f"{n / 2**30:6.2f} GiB"


def x(value, digits: int = 2) -> str:
    """A ratio: "2.50x"; "-" for None."""
    return "-" if value is None else f"{value:.{digits}f}x"


def ratio(value, reference) -> str:
    """value / reference as "2.50x"; "-" without a reference."""
    return f"{value / reference:.2f}x" if reference else "-"


def dur(seconds) -> str:
    """A duration in s, min or h; "-" for None."""
    if seconds is None:
        return "-"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.0f} s"


def load(entry: dict) -> str:
    """The 1-minute load average before -> after a section (results.json's section entry)."""
    before, after = entry.get("load_average_before"), entry.get("load_average_after")
    if not before or not after:
        return "-"
    return f"{before[0]:.1f} -> {after[0]:.1f}"


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on compute nodes)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def log_floor(ax, values) -> None:
    """A log axis from a third of a decade under the smallest positive value (bars compare)."""
    positive = [v for v in values if v and v > 0]
    if positive:
        ax.set_ylim(min(positive) / 3, max(positive) * 3)


def save_figure(fig, path, title: str | None = None) -> Path:
    """A benchmark chart to `path` (PNG, 100 dpi) with an optional figure title; closes it."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        return save_figure_output(fig, path)
    finally:
        pyplot().close(fig)
