"""Confusion-matrix pictures, and the PNG plumbing every picture of this package shares.

Figures are built with matplotlib's object API on the Agg canvas, never through pyplot: pyplot keeps global
state and picks a GUI backend, neither of which a training loop or a headless server wants.
"""

import io
import pathlib
from collections.abc import Sequence

import matplotlib.image
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_ANNOTATE_UP_TO = 30  # classes; beyond that the numbers in the cells cannot be read
_NAME_TICKS_UP_TO = 60  # classes; beyond that the class names on the axes overlap


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """An empty figure on an Agg canvas (no display, no pyplot state).

    layout=None skips the layout engine, which halves the drawing time; callers then set the margins.
    """
    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure encoded as PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def png_pixels(png: bytes) -> np.ndarray:
    """uint8 [H, W, 3] pixels of PNG bytes (alpha dropped), e.g. for TensorBoard's image summaries."""
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    if pixels.dtype != np.uint8:
        pixels = np.round(pixels * 255).astype(np.uint8)
    return pixels[..., :3]


def save_figure(figure: Figure, path: pathlib.Path) -> bytes:
    """Writes the figure as a PNG file (atomically, so a viewer never sees half a picture); returns the PNG."""
    png = figure_png(figure)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    tmp.write_bytes(png)
    tmp.replace(path)
    return png


def normalize_rows(confusion: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the true class's support): the diagonal becomes per-class recall.

    A class absent from the split has an all-zero row, which stays zero rather than becoming NaN.
    """
    confusion = np.asarray(confusion, np.float64)
    support = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, support, out=np.zeros_like(confusion), where=support > 0)


def confusion_figure(confusion: np.ndarray, class_names: Sequence[str], normalized: bool, title: str) -> Figure:
    """The confusion matrix as a heat map: true class down, predicted class across, values in the cells.

    `normalized` shows row fractions on a fixed 0..1 colour scale, so two runs' pictures compare by eye.
    """
    num_classes = len(class_names)
    values = normalize_rows(confusion) if normalized else np.asarray(confusion)
    per_class = 0.6 if num_classes <= _ANNOTATE_UP_TO else 0.25  # room for numbers, else for names only
    side = min(4.0 + per_class * num_classes, 20.0)
    figure = new_figure(side + 1.5, side)
    axes = figure.add_subplot()
    vmax = 1.0 if normalized else max(float(values.max()), 1.0)
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    figure.colorbar(image, ax=axes, shrink=0.8, label="fraction of the true class" if normalized else "examples")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    if num_classes <= _NAME_TICKS_UP_TO:
        ticks = np.arange(num_classes)
        axes.set_xticks(ticks, labels=list(class_names), rotation=45, ha="right", rotation_mode="anchor")
        axes.set_yticks(ticks, labels=list(class_names))
    if num_classes <= _ANNOTATE_UP_TO:
        _annotate(axes, values, vmax, normalized)
    return figure


def _annotate(axes, values: np.ndarray, vmax: float, normalized: bool) -> None:
    size = 9 if len(values) <= 12 else 7
    for (row, col), value in np.ndenumerate(values):
        text = f"{value:.2f}" if normalized else f"{int(value)}"
        colour = "white" if value > 0.5 * vmax else "black"
        axes.text(col, row, text, ha="center", va="center", color=colour, fontsize=size)


def write_confusion_pngs(
    confusion: np.ndarray, class_names: Sequence[str], directory: pathlib.Path, subtitle: str
) -> dict[str, np.ndarray]:
    """confusion_matrix.png (counts) and confusion_matrix_normalized.png (row fractions) in `directory`.

    Returns {name: uint8 [H, W, 3]} of both pictures, to pass on to TensorBoard.
    """
    pictures = {}
    for name, normalized, what in (
        ("confusion_matrix", False, "counts"),
        ("confusion_matrix_normalized", True, "rows normalised by true class"),
    ):
        figure = confusion_figure(confusion, class_names, normalized, f"Confusion matrix, {what}\n{subtitle}")
        pictures[name] = png_pixels(save_figure(figure, pathlib.Path(directory) / f"{name}.png"))
    return pictures
