"""The comparison's plots (PNG, on matplotlib's Agg canvas without pyplot, so importing this never changes a
user's backend): per-objective win-rates, the two-objective reward front with the MPO preset-weight sweep,
and cost per method. Rows are those of `mpo.compare.comparison_table`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_NAN = float("nan")


def row_objectives(rows: list[dict]) -> list[str]:
    """Objectives in column order, recovered from the row keys."""
    keys = rows[0] if rows else {}
    return [k.split("/")[1] for k in keys if k.startswith("win_rate/") and k.endswith("/mean")]



def _varies(rows: list[dict], key: str) -> bool:
    return len({r[key] for r in rows}) > 1


# ------------------------------------------------------------------------------------------------ plots
def _new_figure(width: float, height: float) -> Any:
    """A figure on the Agg canvas, without pyplot, so importing this module never switches the backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _names(rows: list[dict]) -> list[str]:
    prefix = [k for k in ("task", "policy") if _varies(rows, k)]
    show_beta = _varies(rows, "beta")
    return [" ".join([str(r[k]) for k in prefix] + [str(r["label"])]
                     + ([f"β={r['beta']:g}"] if show_beta else [])) for r in rows]


def _nan0(values: Iterable[float]) -> list[float]:
    return [0.0 if math.isnan(v) else v for v in values]


def _win_rate_errors(rows: list[dict], objective: str) -> list[list[float]]:
    """Error bars: the row's CI, as the table shows it (t-interval over seeds, or the one run's bootstrap)."""
    low, high = [], []
    for r in rows:
        mean = r[f"win_rate/{objective}/mean"]
        low.append(mean - r[f"win_rate/{objective}/ci_low"])
        high.append(r[f"win_rate/{objective}/ci_high"] - mean)
    return [_nan0(low), _nan0(high)]


def plot_win_rates(rows: list[dict], path: Path) -> Path:
    objectives = row_objectives(rows)
    fig = _new_figure(max(6.0, 0.25 * len(rows) * (len(objectives) + 1) + 2), 4.5)
    ax = fig.add_subplot()
    width = 0.8 / len(objectives)
    xs = list(range(len(rows)))
    for k, o in enumerate(objectives):
        offset = (k - (len(objectives) - 1) / 2) * width
        ax.bar([x + offset for x in xs], _nan0(r[f"win_rate/{o}/mean"] for r in rows), width,
               yerr=_win_rate_errors(rows, o), capsize=2, label=o)
    ax.scatter(xs, [r["min_win_rate/mean"] for r in rows], marker="_", s=400, color="black", zorder=3,
               label="min win-rate")
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(xs, _names(rows), rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("win-rate vs reference")
    ax.legend(fontsize=8, loc="upper left")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def preset_fronts(rows: list[dict]) -> dict[tuple, list[dict]]:
    """The MPO preset-weight sweep per (task, policy, beta): rows of method ``mpo`` with preset weights,
    sorted by the weight of the first objective, i.e. the order in which they trace the front."""
    first = row_objectives(rows)[0] if rows else ""
    fronts: dict[tuple, list[dict]] = {}
    for r in rows:
        if _is_preset_mpo(r):
            fronts.setdefault((r["task"], r["policy"], r["beta"]), []).append(r)
    return {k: sorted(v, key=lambda r: (r[f"weights/{first}"], r["label"])) for k, v in fronts.items()}


_MARKERS = {"reference": "*", "single": "^", "mpo": "o", "morlhf": "s", "maxmin_rlhf": "D",
            "reward_soups": "P", "mixed_po": "X"}


def _method_colors(methods: Iterable[str]) -> dict[str, str]:
    """One colour per method, the reference in black, stable across the three plots."""
    others = [m for m in dict.fromkeys(methods) if m != "reference"]
    return {"reference": "black", **{m: f"C{i % 10}" for i, m in enumerate(others)}}


def _is_preset_mpo(row: dict) -> bool:
    return row["method"] == "mpo" and row.get("weights_source") == "preset"


def plot_reward_front(rows: list[dict], results: list[dict], path: Path) -> Path:
    """reward(obj1) vs reward(obj2): every row (per-seed results faint behind it), MPO presets joined."""
    o1, o2 = row_objectives(rows)
    fig = _new_figure(7, 5.5)
    ax = fig.add_subplot()
    colors = _method_colors(r["method"] for r in rows)
    for res in results:
        ax.scatter(res["reward"].get(o1, _NAN), res["reward"].get(o2, _NAN), s=10, alpha=0.25,
                   color=colors[res["method"]], marker=_MARKERS.get(res["method"], "v"))
    for (_, _, beta), front in preset_fronts(rows).items():
        ax.plot([r[f"reward/{o1}/mean"] for r in front], [r[f"reward/{o2}/mean"] for r in front], "-",
                color=colors["mpo"], alpha=0.6, label=f"MPO preset-weight front β={beta:g}")
    seen = set()
    for r, name in zip(rows, _names(rows)):
        m = r["method"]
        legend = "mpo (preset weights)" if _is_preset_mpo(r) else m
        ax.errorbar(r[f"reward/{o1}/mean"], r[f"reward/{o2}/mean"], xerr=_nan0([r[f"reward/{o1}/std"]]),
                    yerr=_nan0([r[f"reward/{o2}/std"]]), fmt=_MARKERS.get(m, "v"), color=colors[m],
                    markerfacecolor="white" if _is_preset_mpo(r) else colors[m], elinewidth=0.8,
                    markersize=12 if m == "reference" else 7, capsize=2, label=None if legend in seen else legend)
        seen.add(legend)
        ax.annotate(name, (r[f"reward/{o1}/mean"], r[f"reward/{o2}/mean"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"reward: {o1}")
    ax.set_ylabel(f"reward: {o2}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_kl(rows: list[dict], path: Path) -> Path:
    """Against KL(π‖π_ref), one point per row: the min win-rate (with both CIs), then each objective's mean
    reward: what each method bought with how far it moved from the reference (the trade-off β sets)."""
    objectives = row_objectives(rows)
    fig = _new_figure(4.2 * (1 + len(objectives)), 4.2)
    colors = _method_colors(r["method"] for r in rows)
    panels = [("min_win_rate", "min win-rate vs reference")] + [(f"reward/{o}", f"reward {o}") for o in objectives]
    for i, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for r, name in zip(rows, _names(rows)):
            x, y = r["kl/mean"], r[f"{key}/mean"]
            if math.isnan(x) or math.isnan(y):
                continue
            xerr = [[_nan0([x - r["kl/ci_low"]])[0]], [_nan0([r["kl/ci_high"] - x])[0]]]
            yerr = None
            if key == "min_win_rate":
                yerr = [[_nan0([y - r["min_win_rate/ci_low"]])[0]], [_nan0([r["min_win_rate/ci_high"] - y])[0]]]
            ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", color=colors[r["method"]], capsize=2, ms=4)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        if key == "min_win_rate":
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("KL(π‖π_ref), nats per response")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_cost(rows: list[dict], path: Path) -> Path:
    """CPU-seconds per row, stacked: the single policies it uses, its own stages, its evaluation (mpo.costs);
    the shared stages, paid once for all rows, are named in the axis label. Rows from results.json files that
    predate the split show their total wall seconds instead."""
    fig = _new_figure(7.5, max(3.0, 0.35 * len(rows) + 1.2))
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
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        colors = _method_colors(r["method"] for r in rows)
        ax.barh(ys, _nan0(r["cost_seconds/mean"] for r in rows), color=[colors[r["method"]] for r in rows])
        ax.set_xlabel("total wall seconds (all stages the method depends on)")
    ax.set_yticks(ys, _names(rows), fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
