"""Charts for the HTML report, drawn with matplotlib and returned as `data:image/svg+xml` URIs.

SVG inside an <img> cannot run script or fetch anything, so untrusted labels drawn in a chart are
inert. Math text is off, so a class named `$x$` is drawn as written.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Sequence

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
RC = {"svg.fonttype": "none", "text.parse_math": False, "svg.hashsalt": "auditor", "font.size": 9,
      "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": 10}
MAX_CATEGORIES = 40


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _to_uri(figure) -> str:
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context(RC):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, dpi=100)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _draw(draw, width: float, height: float) -> str:
    import warnings

    import matplotlib

    with matplotlib.rc_context(RC), warnings.catch_warnings():
        # A label in a script the font lacks (🐜, 猫): the SVG keeps it as text (svg.fonttype none) and the browser
        # draws it; matplotlib's warning about its own layout metrics would only reach the user's terminal.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        figure = _figure(width, height)
        draw(figure)
        return _to_uri(figure)


def _short(text: str, limit: int = 24) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def class_balance_chart(per_split: dict[str, dict]) -> str | None:
    """Bars of images per class, one panel per split (largest classes first when there are many)."""
    splits = [s for s, info in per_split.items() if isinstance(info, dict) and info.get("classes")]
    if not splits:
        return None
    classes = sorted({c for s in splits for c in per_split[s]["classes"]},
                     key=lambda c: -sum(per_split[s]["classes"].get(c, 0) for s in splits))
    shown = classes[:MAX_CATEGORIES]

    def draw(figure):
        axes = figure.subplots(1, len(splits), squeeze=False, sharey=True)[0]
        for i, (ax, split) in enumerate(zip(axes, splits)):
            counts = [per_split[split]["classes"].get(c, 0) for c in shown]
            ax.barh(range(len(shown)), counts, color=PALETTE[i % len(PALETTE)])
            ax.set_yticks(range(len(shown)), [_short(c) for c in shown])
            ax.invert_yaxis()
            ax.set_title(_short(split) + (f" (top {len(shown)} of {len(classes)} classes)" if len(classes) > len(shown) else ""))
            ax.set_xlabel("images")

    return _draw(draw, min(3.2 * len(splits) + 1.5, 14), max(2.0, 0.22 * len(shown) + 1.0))


def projection_chart(projection: dict) -> str:
    """The 2-D PCA map of the embeddings, one colour per split."""

    def draw(figure):
        ax = figure.subplots()
        for i, split in enumerate(projection["splits"]):
            xs = [x for x, s in zip(projection["x"], projection["split"]) if s == split]
            ys = [y for y, s in zip(projection["y"], projection["split"]) if s == split]
            if xs:
                ax.scatter(xs, ys, s=6, alpha=0.6, color=PALETTE[i % len(PALETTE)], label=_short(split),
                           rasterized=True, linewidths=0)
        ratio = projection.get("explained_variance_ratio", [0, 0])
        ax.set_xlabel(f"PC 1 ({ratio[0]:.0%} of variance)")
        ax.set_ylabel(f"PC 2 ({ratio[1]:.0%} of variance)")
        ax.legend(loc="best", markerscale=2, frameon=False)

    return _draw(draw, 6.0, 4.5)


def property_histograms(samples: dict[str, dict[str, list[float]]]) -> str | None:
    """One panel per image property; one density histogram per split, overlaid."""
    splits = list(samples)
    names = [n for n in next(iter(samples.values()), {}) if any(samples[s].get(n) for s in splits)]
    if not names:
        return None

    def draw(figure):
        axes = figure.subplots(1, len(names), squeeze=False)[0]
        for ax, name in zip(axes, names):
            values = [v for s in splits for v in samples[s].get(name, [])]
            low, high = min(values), max(values)
            bins = 20 if high > low else 1
            for i, split in enumerate(splits):
                data = samples[split].get(name, [])
                if data:
                    ax.hist(data, bins=bins, range=(low, high + (1e-9 if high == low else 0)), density=True,
                            histtype="step", linewidth=1.4, color=PALETTE[i % len(PALETTE)], label=_short(split))
            ax.set_title(name)
            ax.set_yticks([])
        axes[0].legend(frameon=False)

    return _draw(draw, min(2.4 * len(names), 14), 2.2)


def history_charts(history: dict[str, Sequence[float]]) -> list[tuple[str, str]]:
    """Keras-style curves per epoch: accuracy-like series in one chart, loss-like in another, the rest in a third."""
    series = {k: list(v) for k, v in history.items() if _numbers(v)}
    groups = {"accuracy": [k for k in series if "acc" in k.lower()],
              "loss": [k for k in series if "loss" in k.lower() or "entropy" in k.lower()]}
    rest = [k for k in series if k not in groups["accuracy"] + groups["loss"]]
    if rest:
        groups["other"] = rest
    charts = []
    for title, keys in groups.items():
        if not keys:
            continue

        def draw(figure, keys=keys, title=title):
            ax = figure.subplots()
            for i, key in enumerate(keys):
                values = series[key]
                ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, color=PALETTE[i % len(PALETTE)],
                        label=_short(key, 32), linestyle="--" if key.lower().startswith("val") else "-")
            ax.set_xlabel("epoch")
            ax.set_ylabel(title)
            ax.set_title(f"model {title}")
            ax.legend(frameon=False)

        charts.append((title, _draw(draw, 4.6, 3.2)))
    return charts


def bar_chart(values: dict[str, float], title: str) -> str | None:
    """Horizontal bars of named numbers (for example a gap attribution), largest magnitude first."""
    items = sorted(((k, float(v)) for k, v in values.items() if _number(v)), key=lambda kv: -abs(kv[1]))[:MAX_CATEGORIES]
    if not items:
        return None

    def draw(figure):
        ax = figure.subplots()
        ax.barh(range(len(items)), [v for _k, v in items],
                color=[PALETTE[0] if v >= 0 else PALETTE[3] for _k, v in items])
        ax.set_yticks(range(len(items)), [_short(k, 32) for k, _v in items])
        ax.invert_yaxis()
        ax.axvline(0, color="#555", linewidth=0.8)
        ax.set_title(title)

    return _draw(draw, 6.0, max(1.8, 0.3 * len(items) + 1.0))


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(values) -> bool:
    return isinstance(values, (list, tuple)) and len(values) >= 1 and all(_number(v) for v in values)
