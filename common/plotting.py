"""Headless matplotlib helpers: training curves, scatter with fitted curves, confusion matrices."""

import os

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from common.atomic_io import atomic_path  # noqa: E402


def new_figure(ncols: int = 1, nrows: int = 1, panel_size: tuple[float, float] = (5.5, 4.2)
               ) -> tuple[Figure, np.ndarray]:
    """A figure with a grid of panels; `axes` is always a 2-D array indexed [row, column]."""
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(panel_size[0] * ncols, panel_size[1] * nrows))
    return fig, axes


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Save `fig` atomically at 150 dpi and close it (laid out tightly, unless it has a layout engine of
    its own, such as the constrained one a colour bar across several panels needs)."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150)
    plt.close(fig)


def plot_curves(ax: Axes, history: dict[str, list[float]], metric: str, *, log: bool = False,
                label: str = "") -> None:
    """Draw `train_<metric>` and `val_<metric>` from a training history against the epoch; `label`
    prefixes the legend entries (e.g. one run among several)."""
    for split, style in (("train", "-"), ("val", "--")):
        key = f"{split}_{metric}"
        if history.get(key):
            ax.plot(history["epoch"], history[key], style, marker=".", label=label + split)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()


def plot_member_histories(histories: list[dict[str, list[float]]], metrics: list[str],
                          path: str | os.PathLike, title: str = "") -> None:
    """One panel per metric (e.g. ['loss', 'acc']), with train and validation curves of each history
    (one per ensemble member), saved to `path`."""
    fig, axes = new_figure(len(metrics))
    for member, history in enumerate(histories):
        for ax, metric in zip(axes[0], metrics):
            plot_curves(ax, history, metric, label=f"member {member + 1} " if len(histories) > 1 else "")
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def plot_scatter_fit(ax: Axes, x: np.ndarray, y: np.ndarray,
                     curves: dict[str, tuple[np.ndarray, np.ndarray]], *, points_label: str = "data",
                     max_points: int = 2000) -> None:
    """Scatter the (x, y) data and draw each named curve, sorted by x so it reads as a line."""
    x, y = np.asarray(x).ravel(), np.asarray(y).ravel()
    step = max(1, len(x) // max_points)
    ax.scatter(x[::step], y[::step], s=6, alpha=0.35, color="gray", label=points_label)
    for label, (cx, cy) in curves.items():
        order = np.argsort(np.asarray(cx).ravel())
        ax.plot(np.asarray(cx).ravel()[order], np.asarray(cy).ravel()[order], lw=2, label=label)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(alpha=0.3)
    ax.legend()


def plot_confusion_matrix(cm: np.ndarray, class_names: list[str], path: str | os.PathLike,
                          title: str = "") -> None:
    """Row-normalised confusion matrix (true class per row) with class names and percentages."""
    cm = np.asarray(cm, dtype=float)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.6 * len(class_names) + 2)
    fig, axes = new_figure(panel_size=(size + 1, size))
    ax = axes[0, 0]
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in ticks:
        for j in ticks:
            ax.text(j, i, f"{100 * rates[i, j]:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    save_figure(fig, path)
