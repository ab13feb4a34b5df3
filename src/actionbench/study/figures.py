"""What every report figure shares: matplotlib without a display, and PNG + SVG files."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend (reports are written on machines without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_dir: Path, stem: str) -> list[Path]:
    """`out_dir/stem.png` (130 dpi) and `.svg`; closes the figure; returns both paths."""
    paths = [out_dir / f"{stem}.{ext}" for ext in ("png", "svg")]
    for path in paths:
        fig.savefig(path, dpi=130)
    pyplot().close(fig)
    return paths
