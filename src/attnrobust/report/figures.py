"""The report's figures: pure functions from loaded results to matplotlib figures, and one saver.

Figures are git-tracked, so they must be small and byte-identical between runs of the same
inputs: Agg canvas, one fixed style (:data:`STYLE`, DejaVu Sans, which ships with matplotlib),
modest dpi and no ``Software``/date metadata in the PNG. Nothing here touches pyplot's global
state: each function builds a :class:`~matplotlib.figure.Figure` inside :func:`style`.

Budgets on every axis are in 8-bit levels (``eps 8`` = 8/255), as in params.yaml. Eps axes are
``symlog`` base 2 so the doubling sweep (2, 4, 8, 16) is evenly spaced and the whole-box budget
(255) sits visibly far out, instead of squeezing every other point into the left edge.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from attnrobust.report.inputs import Curve

DPI = 100
STYLE = {
    "font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8,
    "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7, "figure.dpi": DPI, "savefig.dpi": DPI,
    "axes.spines.top": False, "axes.spines.right": False, "lines.linewidth": 1.3, "lines.markersize": 4,
    "image.interpolation": "nearest", "svg.hashsalt": "attnrobust", "path.simplify": False,
}
MARKERS = "os^vDP<>Xph*"
WHOLE_BOX = 255  # the eps sweep's last point: any input is reachable


@contextlib.contextmanager
def style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width: float, height: float):
    """A figure with constrained layout, which keeps colour bars and outside legends clear of the axes."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig, path: Path) -> Path:
    """PNG without a ``Software`` tag (the matplotlib version would leak into the bytes)."""
    with style():
        fig.savefig(path, dpi=DPI, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.05)
    return path


def palette(names: Sequence[str]) -> dict[str, tuple]:
    """One fixed colour per experiment for the whole report (tab10, then Dark2, then Set1)."""
    from matplotlib import colormaps

    colours = [*colormaps["tab10"].colors, *colormaps["Dark2"].colors, *colormaps["Set1"].colors]
    return {name: tuple(colours[i % len(colours)]) for i, name in enumerate(names)}


# ----------------------------------------------------------------------------- curves


def _eps_axis(ax, xs: Sequence[float], headline_eps: float | None) -> None:
    ax.set_xscale("symlog", base=2, linthresh=2, linscale=0.6)
    ticks = sorted({float(x) for x in xs if not math.isnan(x)})
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{x:g}" + ("\n(whole box)" if x == WHOLE_BOX else "") for x in ticks])
    ax.minorticks_off()
    if headline_eps is not None:
        ax.axvline(headline_eps, color="0.35", linestyle=":", linewidth=0.9)
        ax.annotate("attack.eps", (headline_eps, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -2),
                    textcoords="offset points", va="top", fontsize=6, color="0.35")


def _plot_series(ax, curve: Curve, names: Sequence[str], colours: dict) -> list[str]:
    drawn = []
    for i, name in enumerate(names):
        if name not in curve.series:
            continue
        xs, ys = np.asarray(curve.x, float), np.asarray(curve.series[name], float)
        keep = ~np.isnan(ys)
        ax.plot(xs[keep], ys[keep], marker=MARKERS[i % len(MARKERS)], color=colours[name], label=name)
        drawn.append(name)
    return drawn


def curves_figure(panels: Sequence[tuple[str, str, Curve]], names: Sequence[str], colours: dict, *,
                  y_label: str, headline_eps: float | None, eps_label: str = "eps (8-bit levels)"):
    """Side-by-side panels ``(title, kind, curve)`` with ``kind`` "eps" or "steps"; one legend
    for all, outside the axes on the right so it never covers a curve."""
    with style():
        fig = new_figure(3.0 * len(panels) + 1.6, 2.7)
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        drawn: list[str] = []
        for ax, (title, kind, curve) in zip(axes, panels):
            drawn += _plot_series(ax, curve, names, colours)
            if kind == "eps":
                _eps_axis(ax, curve.x, headline_eps)
                ax.set_xlabel(eps_label)
            else:
                ax.set_xscale("log", base=2)
                ax.set_xticks(curve.x)
                ax.set_xticklabels([f"{x:g}" for x in curve.x])
                ax.minorticks_off()
                ax.set_xlabel(f"PGD steps (at attack.eps = {headline_eps:g})" if headline_eps is not None
                              else "PGD steps")
            ax.set_title(title)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(True, alpha=0.3)
        axes[0].set_ylabel(y_label)
        handles = {h.get_label(): h for ax in axes for h in ax.get_lines() if not h.get_label().startswith("_")}
        order = [n for n in names if n in handles]
        fig.legend([handles[n] for n in order], order, loc="outside right center", frameon=False)
    return fig


def gap_bars_figure(rows: dict[str, dict], colours: dict):
    """Grouped bars per video experiment: GAP@20 clean, under FGSM, PGD and the worst case."""
    metrics = [(k, label) for k, label in (("clean_gap", "clean"), ("fgsm_gap", "FGSM"), ("pgd_gap", "PGD"),
                                           ("robust_gap", "worst case")) if any(k in r for r in rows.values())]
    names = list(rows)
    with style():
        fig = new_figure(1.2 + 1.3 * len(names), 2.8)
        ax = fig.subplots()
        width = 0.8 / len(metrics)
        shades = [0.0, 0.35, 0.55, 0.75]
        for j, (key, label) in enumerate(metrics):
            xs = np.arange(len(names)) + (j - (len(metrics) - 1) / 2) * width
            values = [rows[n].get(key, math.nan) for n in names]
            ax.bar(xs, values, width, label=label, color=str(shades[j % len(shades)]), edgecolor="black",
                   linewidth=0.4)
            for x, v in zip(xs, values):
                if not math.isnan(v):
                    ax.annotate(f"{v:.2f}", (x, v), xytext=(0, 1), textcoords="offset points", ha="center",
                                va="bottom", fontsize=6)
        ax.set_xticks(np.arange(len(names)))
        ax.set_xticklabels(names, rotation=20, ha="right")
        for tick, name in zip(ax.get_xticklabels(), names):
            tick.set_color(colours.get(name, "black"))
        ax.set_ylabel("GAP@20")
        ax.set_ylim(0, 1.1)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


ATTACK_KINDS = ("fgsm", "pgd", "pgd_targeted", "adaptive")  # ROC conditions that are attacks, not corruptions


def roc_figure(curves: dict[str, tuple[list[float], list[float]]]):
    """A detector's ROC curves (``condition@strength`` -> points) with their AUC (trapezoid over the
    given points) and the chance diagonal: attacks left, corruptions right (when there are both)."""
    groups = {"attacks": {}, "corruptions": {}}
    for name, points in curves.items():
        groups["attacks" if name.split("@")[0] in ATTACK_KINDS else "corruptions"][name] = points
    groups = {k: v for k, v in groups.items() if v}
    with style():
        fig = new_figure(4.0 * len(groups) + 0.4, 3.4)
        axes = fig.subplots(1, len(groups), sharey=True, squeeze=False)[0]
        for ax, (title, group) in zip(axes, groups.items()):
            ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=0.8, label="chance (AUC 0.50)")
            for i, (name, (fpr, tpr)) in enumerate(group.items()):
                order = np.argsort(fpr, kind="stable")
                f, t = np.asarray(fpr)[order], np.asarray(tpr)[order]
                ax.plot(f, t, label=f"{name} (AUC {auc(f, t):.2f})", marker=MARKERS[i % len(MARKERS)], markevery=0.1)
            ax.axvline(0.05, color="0.35", linestyle=":", linewidth=0.9)
            ax.set_xlabel("false positive rate (clean inputs flagged)")
            ax.set_title(title)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
            ax.grid(True, alpha=0.3)
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False, ncols=2)
        axes[0].set_ylabel("true positive rate (perturbed inputs flagged)")
    return fig


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under a ROC curve given as points sorted by FPR (trapezoid rule)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) if len(fpr) > 1 else math.nan


# ----------------------------------------------------------------------------- the S3TA race


def race_figure(rows: list[dict], model: str, baselines: Sequence[str], trained_glances: int | None):
    """Heatmaps, glances x attack steps, of accuracy on the true label under random-targeted PGD:
    white-box, and the per-sample worst of white-box and transfer from the trained glances.
    Baselines (models without glances) are extra rows under a separating line."""
    steps = sorted({r["steps"] for r in rows if r["experiment"] == model})
    glances = sorted({r["glances"] for r in rows if r["experiment"] == model})
    labels = [f"{model}: {g} glance{'s' * (g != 1)}" + (" (trained)" if g == trained_glances else "") for g in glances]
    cell = {(r["experiment"], r["glances"], r["steps"]): r for r in rows}
    keys = [(model, g) for g in glances] + [(b, 0) for b in baselines]
    labels += list(baselines)
    with style():
        fig = new_figure(2.2 + 1.1 * len(steps) * 2, 0.9 + 0.3 * len(keys))
        axes = fig.subplots(1, 2, sharey=True)
        for ax, (metric, title) in zip(axes, (("acc", "white-box"), ("worst_acc", "worst of white-box and transfer"))):
            grid = np.array([[cell[(e, g, s)][metric] if (e, g, s) in cell else math.nan for s in steps]
                             for e, g in keys])
            image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
            for (i, j), v in np.ndenumerate(grid):
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6.5,
                            color="black" if v > 0.55 else "white")
            if baselines:
                ax.axhline(len(glances) - 0.5, color="white", linewidth=2)
            ax.set_xticks(range(len(steps)))
            ax.set_xticklabels([str(s) for s in steps])
            ax.set_xlabel("attack steps (random-targeted PGD)")
            ax.set_title(title)
        axes[0].set_yticks(range(len(keys)))
        axes[0].set_yticklabels(labels)
        fig.colorbar(image, ax=list(axes), shrink=0.9, label="accuracy on the true label")
    return fig


# ----------------------------------------------------------------------------- images


def rgb(x: np.ndarray) -> np.ndarray:
    """(C, H, W) model input -> (H, W, 3) in [0, 1]; a mask channel (C = 4) is left out."""
    return np.clip(np.transpose(x[:3], (1, 2, 0)), 0, 1)


def amplified(x_adv: np.ndarray, x: np.ndarray, eps_levels: float) -> np.ndarray:
    """The perturbation scaled so that -eps is black, 0 mid-grey and +eps white, per channel."""
    delta = (x_adv[:3] - x[:3]) * 255.0 / max(float(eps_levels), 1e-9)
    return np.clip(0.5 + 0.5 * np.transpose(delta, (1, 2, 0)), 0, 1)


def class_name(classes: np.ndarray | None, index: int) -> str:
    """``7`` or ``7 stop``: the index, plus the name when it says more than the index."""
    if classes is None or not 0 <= index < len(classes):
        return str(index)
    name = str(classes[index])
    return str(index) if name.lstrip("0") in (str(index), "") else f"{index} {name[:10]}"


def _image(ax, img: np.ndarray, title: str = "", colour: str = "black", overlay: np.ndarray | None = None) -> None:
    ax.imshow(img, interpolation="nearest")
    if overlay is not None:
        h, w = img.shape[:2]
        ax.imshow(overlay, cmap="inferno", alpha=0.6, vmin=0, vmax=1, interpolation="nearest",
                  extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=6.5, color=colour, pad=2)


def _verdict(pred: int, label: int, classes) -> tuple[str, str]:
    """Title text and colour: a wrong prediction is red and marked ✗, so colour is not the only cue."""
    right = pred == label
    return (f"pred {class_name(classes, pred)}" + ("" if right else " ✗"), "black" if right else "#c0392b")


def gallery_figure(ex: dict[str, np.ndarray], max_rows: int = 4):
    """Rows = samples; columns = clean, PGD, PGD perturbation (amplified), random-targeted PGD, its
    perturbation, and a clean input of the target class (where the attacked subset has one)."""
    classes, eps = ex.get("classes"), float(ex["eps"])
    k = min(max_rows, len(ex["label"]))
    heads = ["clean", f"PGD-{int(ex['steps'])}, eps {eps:g}", "PGD perturbation", "targeted PGD",
             "targeted perturbation", "target class (clean)"]
    with style():
        fig = new_figure(6 * 1.05, k * 1.2 + 0.2)
        axes = fig.subplots(k, 6, squeeze=False)
        for i in range(k):
            label, target = int(ex["label"][i]), int(ex["target"][i])
            x = ex["x_clean"][i]
            _image(axes[i, 0], rgb(x), f"label {class_name(classes, label)}\n" +
                   _verdict(int(ex["pred_clean"][i]), label, classes)[0],
                   _verdict(int(ex["pred_clean"][i]), label, classes)[1])
            text, colour = _verdict(int(ex["pred_adv"][i]), label, classes)
            _image(axes[i, 1], rgb(ex["x_adv"][i]), text, colour)
            _image(axes[i, 2], amplified(ex["x_adv"][i], x, eps), f"±{eps:g} levels")
            pred = int(ex["pred_targeted"][i])
            text, colour = _verdict(pred, label, classes)
            _image(axes[i, 3], rgb(ex["x_targeted"][i]), f"target {class_name(classes, target)}\n"
                   + (text.replace("✗", "✗ hit") if pred == target else text), colour)
            _image(axes[i, 4], amplified(ex["x_targeted"][i], x, eps), f"±{eps:g} levels")
            if "has_target_example" in ex and bool(ex["has_target_example"][i]):
                _image(axes[i, 5], rgb(ex["x_target_example"][i]), f"class {class_name(classes, target)}")
            else:
                _image(axes[i, 5], np.ones_like(rgb(x)), "none in subset")
        for j, head in enumerate(heads):
            axes[0, j].annotate(head, (0.5, 1.0), xycoords="axes fraction", xytext=(0, 20), textcoords="offset points",
                                ha="center", va="bottom", fontsize=7, fontweight="bold")
    return fig


def example_attention_figure(ex: dict[str, np.ndarray], max_rows: int = 4):
    """Rows = samples; columns = the model's attention map over the clean, PGD and random-targeted
    PGD input (each map in [0, 1], brighter = more weight)."""
    classes = ex.get("classes")
    k = min(max_rows, len(ex["label"]))
    kinds = [("clean", "clean"), ("adv", "PGD"), ("targeted", "targeted PGD")]
    with style():
        fig = new_figure(3 * 1.35 + 0.6, k * 1.2 + 0.2)
        axes = fig.subplots(k, 3, squeeze=False)
        for i in range(k):
            label = int(ex["label"][i])
            for j, (kind, head) in enumerate(kinds):
                text, colour = _verdict(int(ex[f"pred_{kind}"][i]), label, classes)
                if kind == "targeted":
                    text = f"target {class_name(classes, int(ex['target'][i]))}\n{text}"
                elif kind == "clean":
                    text = f"label {class_name(classes, label)}\n{text}"
                _image(axes[i, j], rgb(ex[f"x_{kind}"][i]), text, colour, overlay=ex[f"attention_{kind}"][i])
                if i == 0:
                    axes[i, j].annotate(head, (0.5, 1.0), xycoords="axes fraction", xytext=(0, 20),
                                        textcoords="offset points", ha="center", fontsize=7, fontweight="bold")
        _attention_colorbar(fig, axes)
    return fig


def _attention_colorbar(fig, axes) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig.colorbar(ScalarMappable(Normalize(0, 1), "inferno"), ax=axes.ravel().tolist(), shrink=0.6,
                 label="attention (scaled to max 1)")


def glances_figure(att: dict[str, np.ndarray], max_rows: int = 4):
    """S3TA's glances (``attention.npz``): per sample, the clean and the random-targeted adversarial
    input, each followed by one map per glance (mean over heads, scaled to its own maximum)."""
    glances = att["attention_clean"].shape[1]
    k = min(max_rows, len(att["label"]))
    heads = ("clean input", f"random-targeted PGD-{int(att['steps'])}, eps {int(att['eps'])}")
    with style():
        fig = new_figure(2 * (glances + 1) * 0.85 + 0.8, k * 1.05 + 0.4)
        halves = fig.subfigures(1, 2, wspace=0.02)
        for half, (sub, kind) in enumerate(zip(halves, ("clean", "adv"))):
            sub.suptitle(heads[half], fontsize=7, fontweight="bold")
            axes = sub.subplots(k, glances + 1, squeeze=False)
            for i in range(k):
                label, target = int(att["label"][i]), int(att["target"][i])
                img = rgb(att[f"x_{kind}"][i])
                text, colour = _verdict(int(att[f"pred_{kind}"][i]), label, None)
                _image(axes[i, 0], img, f"label {label}\n{text}" if kind == "clean" else f"target {target}\n{text}",
                       colour)
                for g in range(glances):
                    m = att[f"attention_{kind}"][i, g].mean(0)  # (h, w), mean over heads
                    _image(axes[i, 1 + g], img, f"glance {g + 1}", overlay=m / max(float(m.max()), 1e-12))
        _attention_colorbar(halves[1], axes)
    return fig
