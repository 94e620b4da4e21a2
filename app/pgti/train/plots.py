"""Training curves as PNG (matplotlib, Agg backend: no display needed on compute nodes)."""
from __future__ import annotations

from pathlib import Path

from pgti.outputs import save_figure_output


def plot_curves(rows: list[dict], directory: Path) -> list[Path]:
    """loss.png (train loss and val MAE per epoch) and val_mae.png (val MAE per horizon)."""
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    epochs = [r["epoch"] + 1 for r in rows]
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [r["train_loss"] for r in rows], marker="o", label="train loss (masked MAE)")
    val = [(e, r["val"]["overall"]["mae"]) for e, r in zip(epochs, rows) if r.get("val")]
    if val:
        ax.plot(*zip(*val), marker="s", label="val MAE")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MAE (data units)")
    ax.set_title("training curves")
    ax.grid(alpha=0.3)
    ax.legend()
    written.append(_save(fig, directory / "loss.png"))
    plt.close(fig)

    if val:
        fig, ax = plt.subplots(figsize=(6, 4))
        for step in (3, 6, 12):
            pts = [(e, r["val"]["horizon"][step - 1]["mae"]) for e, r in zip(epochs, rows)
                   if r.get("val") and len(r["val"]["horizon"]) >= step]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=f"horizon {step}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("val MAE")
        ax.set_title("validation MAE by horizon")
        ax.grid(alpha=0.3)
        ax.legend()
        written.append(_save(fig, directory / "val_mae.png"))
        plt.close(fig)
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    return save_figure_output(fig, path)  # a viewer never sees half a PNG
