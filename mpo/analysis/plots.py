"""The comparison's plots (PNG, on matplotlib's Agg canvas without pyplot, so importing this never changes a
user's backend): per-objective win-rates, the reward front (every pair of objectives, with the MPO preset-weight
sweep), min win-rate and rewards against KL, and cost per method. Rows are those of
`mpo.analysis.table.comparison_table`, in its order.

Made to be read at a glance: a title that says task, β and seeds; legends outside the data; the 0.5 line (a tie
with the reference) labelled; error bars only where there is a spread to show; and point labels placed where
they overlap no other label or point (`place_labels`, a few lines of greedy placement with leader lines), which
tests/test_plots.py checks on the tracked example comparisons."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

_NAN = float("nan")
TIE = "tie with the reference (0.5)"


def row_objectives(rows: list[dict]) -> list[str]:
    """Objectives in column order, recovered from the row keys."""
    keys = rows[0] if rows else {}
    return [k.split("/")[1] for k in keys if k.startswith("win_rate/") and k.endswith("/mean")]


def varies(rows: list[dict], key: str) -> bool:
    return len({r[key] for r in rows}) > 1


# ------------------------------------------------------------------------------------------------ figures
def new_figure(width: float, height: float, layout: str | None = None) -> Any:
    """A figure on the Agg canvas, without pyplot, so importing this module never switches the backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _freeze_layout(fig: Any) -> Any:
    """Run the constrained layout once and keep it, so that labels placed afterwards stay where they were
    checked to fit; returns the renderer that measured them."""
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    return fig.canvas.get_renderer()


def title(rows: list[dict]) -> str:
    """``reviews · β = 0.1 · seed 0`` / ``reviews · β = 0.1, 0.5 · seeds 0, 1, 2 (mean over seeds)``."""
    tasks = ", ".join(dict.fromkeys(str(r["task"]) for r in rows))
    policies = ", ".join(dict.fromkeys(str(r["policy"]) for r in rows))
    betas = ", ".join(f"{b:g}" for b in sorted({float(r["beta"]) for r in rows}))
    seeds = sorted({s for r in rows for s in str(r.get("seeds", "")).split(";") if s != ""}, key=_seed_order)
    parts = [f"{tasks} ({policies})", f"β = {betas}"]
    if seeds:
        parts.append(f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(seeds)} (mean over seeds)")
    return " · ".join(parts)


def _seed_order(seed: str) -> tuple:
    return (0, int(seed), "") if seed.lstrip("-").isdigit() else (1, 0, seed)


def _names(rows: list[dict]) -> list[str]:
    prefix = [k for k in ("task", "policy") if varies(rows, k)]
    show_beta = varies(rows, "beta")
    return [" ".join([str(r[k]) for k in prefix] + [str(r["label"])]
                     + ([f"β={r['beta']:g}"] if show_beta else [])) for r in rows]


def _nan0(values: Iterable[float]) -> list[float]:
    return [0.0 if math.isnan(v) else v for v in values]


def _spread(mean: float, low: float, high: float) -> list[list[float]] | None:
    """An asymmetric error bar ``[[below], [above]]``, or None where the interval is unknown (no bar, no caps)."""
    if math.isnan(low) or math.isnan(high) or math.isnan(mean):
        return None
    return [[max(mean - low, 0.0)], [max(high - mean, 0.0)]]


_MARKERS = {"reference": "*", "single": "^", "mpo": "o", "morlhf": "s", "maxmin_rlhf": "D",
            "reward_soups": "P", "mixed_po": "X"}


def _method_colors(methods: Iterable[str]) -> dict[str, str]:
    """One colour per method, the reference in black, stable across the plots."""
    others = [m for m in dict.fromkeys(methods) if m != "reference"]
    return {"reference": "black", **{m: f"C{i % 10}" for i, m in enumerate(others)}}


def _is_preset_mpo(row: dict) -> bool:
    return row["method"] == "mpo" and row.get("weights_source") == "preset"


# ----------------------------------------------------------------------------------------- label placement
# Offsets (in points) tried for a point's label, nearest first: 12 directions on each ring; past the first ring a
# leader line joins label and point
_DIRECTIONS = [(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in (30, -30, 150, -150, 0, 180,
                                                                              60, -60, 120, -120, 90, -90)]
_RADII = [6, 12, 20, 30, 42, 56, 72, 90, 110, 135]
_MARKER_PX = 6  # half the side of the square a marker is taken to occupy


def _overlap(a: Any, b: Any) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width * height if width > 0 and height > 0 else 0.0


def text_extent(text: Any, renderer: Any) -> Any:
    """A text's own box in display units (an annotation's `get_window_extent` also spans its leader line)."""
    from matplotlib.text import Annotation, Text

    if isinstance(text, Annotation):
        text.update_positions(renderer)  # where its offset puts it (set at draw time otherwise)
    return Text.get_window_extent(text, renderer)


def place_labels(ax: Any, points: Sequence[tuple[float, float, str]], renderer: Any, fontsize: float = 7) -> list:
    """Label each ``(x, y, text)`` point where the label overlaps no other label, no point's marker and no text
    already in the axes, and stays inside the axes: the nearest free offset of `_DIRECTIONS` × `_RADII`, with a
    grey leader line when it had to move away (the least-overlapping offset when none is free). Call it last,
    once the axes' limits and the figure's layout are final."""
    from matplotlib.transforms import Bbox

    frame = ax.get_window_extent(renderer)
    pixels = [ax.transData.transform((x, y)) for x, y, _ in points]
    taken = [Bbox.from_extents(px - _MARKER_PX, py - _MARKER_PX, px + _MARKER_PX, py + _MARKER_PX) for px, py in pixels]
    taken += [text_extent(t, renderer) for t in ax.texts]
    labels = []
    for x, y, text in points:
        probe = ax.annotate(text, (x, y), xytext=(0, 0), textcoords="offset points", fontsize=fontsize)
        radius, (dx, dy), box = _free_offset(probe, renderer, taken, frame)
        probe.remove()
        labels.append(ax.annotate(text, (x, y), xytext=(dx * radius, dy * radius), textcoords="offset points",
                                  fontsize=fontsize, **_alignment(dx, dy),
                                  arrowprops=_LEADER if radius > _RADII[0] else None))
        taken.append(box)
    return labels


_LEADER = {"arrowstyle": "-", "color": "0.6", "lw": 0.6, "shrinkA": 0, "shrinkB": 3}


def _alignment(dx: float, dy: float) -> dict[str, str]:
    """Text anchored on the side facing its point."""
    return {"ha": "left" if dx > 0.3 else "right" if dx < -0.3 else "center",
            "va": "bottom" if dy > 0.3 else "top" if dy < -0.3 else "center"}


def _free_offset(label: Any, renderer: Any, taken: list, frame: Any) -> tuple[float, tuple[float, float], Any]:
    """The nearest offset where ``label`` overlaps nothing in ``taken`` and stays inside ``frame``; else the
    one with the least overlap (leaving the axes counts tenfold)."""
    best = None
    for radius, (dx, dy) in itertools.product(_RADII, _DIRECTIONS):
        label.set_position((dx * radius, dy * radius))
        label.set(**_alignment(dx, dy))
        box = text_extent(label, renderer)
        outside = box.width * box.height - _overlap(box, frame)
        cost = sum(_overlap(box, other) for other in taken) + 10 * outside
        if best is None or cost < best[0]:
            best = (cost, radius, (dx, dy), box)
        if cost == 0:
            break
    return best[1:]


def _tie_line(ax: Any, label: bool = True) -> None:
    """The dashed 0.5 line, a tie with the reference, labelled at its right end."""
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=0.8, zorder=0)
    if label:
        ax.annotate(TIE, (1, 0.5), xycoords=("axes fraction", "data"), xytext=(-3, 2), textcoords="offset points",
                    ha="right", va="bottom", fontsize=7, color="grey")


# ------------------------------------------------------------------------------------------------ plots
def win_rates_figure(rows: list[dict]) -> Any:
    """Per row (top to bottom in table order), one bar per objective's win-rate against the reference with
    its CI, and the row's minimum as a black tick."""
    objectives = row_objectives(rows)
    height = 0.16 * len(rows) * (len(objectives) + 0.6) + 1.2
    fig = new_figure(8.0, max(3.0, height), layout="constrained")
    ax = fig.add_subplot()
    step = 0.8 / len(objectives)
    ys = list(range(len(rows)))
    for k, o in enumerate(objectives):
        offset = (k - (len(objectives) - 1) / 2) * step
        errors = [_spread(r[f"win_rate/{o}/mean"], r[f"win_rate/{o}/ci_low"], r[f"win_rate/{o}/ci_high"])
                  for r in rows]
        known = all(e is not None for e in errors)
        ax.barh([y + offset for y in ys], _nan0(r[f"win_rate/{o}/mean"] for r in rows), step,
                xerr=[[e[0][0] for e in errors], [e[1][0] for e in errors]] if known else None,
                capsize=0, error_kw={"elinewidth": 0.8}, label=f"win-rate {o}")
    ax.scatter([r["min_win_rate/mean"] for r in rows], ys, marker="|", s=220, color="black", zorder=3,
               label="min win-rate")
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=0.8, label=TIE)
    ax.set_yticks(ys, _names(rows), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("win-rate against the reference's responses (bars: CI)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title(rows), fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (not labels[i].startswith("win-rate"), labels[i] == TIE))
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside right upper", fontsize=8,
               frameon=False)
    return fig


def plot_win_rates(rows: list[dict], path: Path) -> Path:
    return _save(win_rates_figure(rows), path)


def preset_fronts(rows: list[dict]) -> dict[tuple, list[dict]]:
    """The MPO preset-weight sweep per (task, policy, beta): rows of method ``mpo`` with preset weights,
    sorted by the weight of the first objective, i.e. the order in which they trace the front."""
    first = row_objectives(rows)[0] if rows else ""
    fronts: dict[tuple, list[dict]] = {}
    for r in rows:
        if _is_preset_mpo(r):
            fronts.setdefault((r["task"], r["policy"], r["beta"]), []).append(r)
    return {k: sorted(v, key=lambda r: (r[f"weights/{first}"], r["label"])) for k, v in fronts.items()}


def objective_pairs(rows: list[dict]) -> list[tuple[str, str]]:
    """Every pair of objectives, in column order: one reward-front panel each (one panel for K = 2)."""
    return list(itertools.combinations(row_objectives(rows), 2))


def reward_front_figure(rows: list[dict], results: list[dict]) -> Any:
    """reward(a) vs reward(b) for every pair of objectives: every row (± std over seeds where there are
    several; per-seed results faint behind), MPO presets joined in weight order."""
    pairs = objective_pairs(rows)
    columns = min(len(pairs), 3)
    grid = math.ceil(len(pairs) / columns)
    fig = new_figure(5.2 * columns + 1.8, 4.6 * grid + 0.4, layout="constrained")
    colors = _method_colors(r["method"] for r in rows)
    axes = [fig.add_subplot(grid, columns, i + 1) for i in range(len(pairs))]
    for ax, (o1, o2) in zip(axes, pairs):
        _draw_front(ax, rows, results, o1, o2, colors)
    handles = {}
    for ax in axes:
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8, frameon=False)
    fig.suptitle(title(rows), fontsize=10)
    renderer = _freeze_layout(fig)
    names = _names(rows)
    for ax, (o1, o2) in zip(axes, pairs):
        place_labels(ax, [(r[f"reward/{o1}/mean"], r[f"reward/{o2}/mean"], name) for r, name in zip(rows, names)
                          if not math.isnan(r[f"reward/{o1}/mean"] + r[f"reward/{o2}/mean"])], renderer)
    return fig


def _draw_front(ax: Any, rows: list[dict], results: list[dict], o1: str, o2: str, colors: dict) -> None:
    for res in results:
        ax.scatter(res["reward"].get(o1, _NAN), res["reward"].get(o2, _NAN), s=10, alpha=0.25,
                   color=colors.get(res["method"], "grey"), marker=_MARKERS.get(res["method"], "v"))
    for (_, _, beta), front in preset_fronts(rows).items():
        ax.plot([r[f"reward/{o1}/mean"] for r in front], [r[f"reward/{o2}/mean"] for r in front], "-",
                color=colors["mpo"], alpha=0.6, label=f"MPO preset-weight front β={beta:g}")
    seen = set()
    for r in rows:
        m = r["method"]
        legend = "mpo (preset weights)" if _is_preset_mpo(r) else m
        x, y = r[f"reward/{o1}/mean"], r[f"reward/{o2}/mean"]
        xerr = None if math.isnan(r[f"reward/{o1}/std"]) else [r[f"reward/{o1}/std"]]
        yerr = None if math.isnan(r[f"reward/{o2}/std"]) else [r[f"reward/{o2}/std"]]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=_MARKERS.get(m, "v"), color=colors[m],
                    markerfacecolor="white" if _is_preset_mpo(r) else colors[m], elinewidth=0.8,
                    markersize=12 if m == "reference" else 7, capsize=0, label=None if legend in seen else legend)
        seen.add(legend)
    ax.margins(0.12)
    ax.set_xlabel(f"reward: {o1}")
    ax.set_ylabel(f"reward: {o2}")
    ax.grid(alpha=0.3)


def plot_reward_front(rows: list[dict], results: list[dict], path: Path) -> Path:
    return _save(reward_front_figure(rows, results), path)


def kl_figure(rows: list[dict]) -> Any:
    """Against KL(π‖π_ref), one point per row: the min win-rate (with both CIs), then each objective's mean
    reward: what each method bought with how far it moved from the reference (the trade-off β sets)."""
    objectives = row_objectives(rows)
    panels = [("min_win_rate", "min win-rate vs reference")] + [(f"reward/{o}", f"reward {o}") for o in objectives]
    fig = new_figure(4.6 * len(panels), 4.8, layout="constrained")
    colors = _method_colors(r["method"] for r in rows)
    axes = [fig.add_subplot(1, len(panels), i + 1) for i in range(len(panels))]
    shown = [r for r in rows if not math.isnan(r["kl/mean"])]
    for ax, (key, label) in zip(axes, panels):
        for r in shown:
            x, y = r["kl/mean"], r[f"{key}/mean"]
            if math.isnan(y):
                continue
            yerr = _spread(y, r["min_win_rate/ci_low"], r["min_win_rate/ci_high"]) if key == "min_win_rate" else None
            ax.errorbar([x], [y], xerr=_spread(x, r["kl/ci_low"], r["kl/ci_high"]), yerr=yerr, fmt="o",
                        color=colors[r["method"]], capsize=0, elinewidth=0.8, ms=4)
        if key == "min_win_rate":
            _tie_line(ax)
        ax.margins(0.12)
        ax.set_xlabel("KL(π‖π_ref), nats per response")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title(rows), fontsize=10)
    renderer = _freeze_layout(fig)
    names = dict(zip((id(r) for r in rows), _names(rows)))
    for ax, (key, _) in zip(axes, panels):
        place_labels(ax, [(r["kl/mean"], r[f"{key}/mean"], names[id(r)]) for r in shown
                          if not math.isnan(r[f"{key}/mean"])], renderer)
    return fig


def plot_kl(rows: list[dict], path: Path) -> Path:
    return _save(kl_figure(rows), path)


def cost_figure(rows: list[dict]) -> Any:
    """CPU-seconds per row, stacked: the single policies it uses, its own stages, its evaluation (mpo.infra.costs);
    the shared stages, paid once for all rows, are named in the axis label. Rows from results.json files that
    predate the split show their total wall seconds instead."""
    fig = new_figure(8.0, max(3.0, 0.3 * len(rows) + 1.4), layout="constrained")
    ax = fig.add_subplot()
    ys = list(range(len(rows)))
    split = all(not math.isnan(r.get("cost_own_cpu_seconds/mean", math.nan)) for r in rows)
    if split:
        left = [0.0] * len(rows)
        for part, color in (("singles", "#9ecae1"), ("own", "#3182bd"), ("evaluation", "#fdae6b")):
            widths = _nan0(r[f"cost_{part}_cpu_seconds/mean"] for r in rows)
            ax.barh(ys, widths, left=left, color=color, label=part)
            left = [a + b for a, b in zip(left, widths)]
        shared = max(_nan0(r["cost_shared_cpu_seconds/mean"] for r in rows))
        ax.set_xlabel(f"CPU-seconds (all threads); shared stages: {shared:.0f} CPU-s, paid once for all rows")
        fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    else:
        colors = _method_colors(r["method"] for r in rows)
        ax.barh(ys, _nan0(r["cost_seconds/mean"] for r in rows), color=[colors[r["method"]] for r in rows])
        ax.set_xlabel("total wall seconds (all stages the method depends on)")
    ax.set_yticks(ys, _names(rows), fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title(rows), fontsize=9)
    return fig


def plot_cost(rows: list[dict], path: Path) -> Path:
    return _save(cost_figure(rows), path)
