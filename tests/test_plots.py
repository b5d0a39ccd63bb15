"""The comparison's plots read at a glance: rendered from the tracked example comparisons (outputs/example), no
two texts overlap and every text stays inside the figure; a title names task, β and seeds; the 0.5 line is
labelled; one seed draws no error bars where there is no spread; three objectives get one front per pair."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import pytest

from mpo.analysis import plots

EXAMPLES = Path(__file__).resolve().parents[1] / "outputs" / "example"
# the README's comparison (2 objectives, 1 seed), the paper's (2 β × 3 seeds, 18 rows), the ablation (3 objectives)
COMPARISONS = ["comparison.csv", "reviews_paper/comparison.csv", "ablation/comparison.csv"]
_TEXT_COLUMNS = {"task", "policy", "method", "label", "seeds", "weights_source", "ci", "singles",
                 "min_win_rate_objective"}


def read_rows(path: Path) -> list[dict]:
    """Rows of `mpo.analysis.table.comparison_table` back from its comparison.csv (floats as written, NaN empty)."""
    def value(key: str, text: str):
        if key in _TEXT_COLUMNS:
            return text
        if key == "n":
            return int(text)
        return math.nan if text == "" else float(text)

    with path.open(newline="") as handle:
        return [{k: value(k, v) for k, v in line.items()} for line in csv.DictReader(handle)]


FIGURES = {
    "win_rates": plots.win_rates_figure,
    "reward_front": lambda rows: plots.reward_front_figure(rows, []),
    "kl": plots.kl_figure,
    "cost": plots.cost_figure,
}


def texts(fig) -> list:
    """Every non-empty text the figure draws: titles, axis labels, tick labels inside the view, point labels,
    legends."""
    fig.draw_without_rendering()
    found = [fig._suptitle, *(t for legend in fig.legends for t in legend.get_texts())]
    for ax in fig.axes:
        found += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for axis, (low, high) in ((ax.xaxis, sorted(ax.get_xlim())), (ax.yaxis, sorted(ax.get_ylim()))):
            found += [tick.label1 for tick in axis.get_major_ticks()
                      if tick.label1.get_visible() and low - 1e-9 <= tick.get_loc() <= high + 1e-9]
    return [t for t in found if t is not None and t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("name", FIGURES)
@pytest.mark.parametrize("comparison", COMPARISONS)
def test_no_two_texts_overlap_and_all_stay_in_the_figure(comparison: str, name: str) -> None:
    fig = FIGURES[name](read_rows(EXAMPLES / comparison))
    renderer = fig.canvas.get_renderer()
    found = texts(fig)
    boxes = [(t.get_text(), plots.text_extent(t, renderer)) for t in found]
    frame = fig.bbox
    for text, box in boxes:
        assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1 and frame.y0 - 1 <= box.y0 and box.y1 <= frame.y1 + 1, (
            f"{name}: {text!r} leaves the figure ({box} vs {frame})")
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert plots._overlap(box_a, box_b) == 0, f"{name} of {comparison}: {a!r} overlaps {b!r}"
    labels = {t.get_text() for t in found}
    assert plots.title(read_rows(EXAMPLES / comparison)) in labels  # task, β and seeds on every plot


def test_title_names_task_beta_and_seeds() -> None:
    assert plots.title(read_rows(EXAMPLES / "comparison.csv")) == "reviews (tiny) · β = 0.1 · seed 0"
    assert plots.title(read_rows(EXAMPLES / "reviews_paper" / "comparison.csv")) == (
        "reviews (tiny) · β = 0.1, 0.5 · seeds 0, 1, 2 (mean over seeds)")


def test_every_point_is_labelled_and_the_tie_line_too() -> None:
    rows = read_rows(EXAMPLES / "comparison.csv")
    fig = plots.kl_figure(rows)
    first = fig.axes[0]
    labels = [t.get_text() for t in first.texts]
    assert plots.TIE in labels and sorted(set(labels) - {plots.TIE}) == sorted(r["label"] for r in rows)
    assert plots.TIE in [t.get_text() for t in plots.win_rates_figure(rows).legends[0].get_texts()]
    front = plots.reward_front_figure(rows, [])
    legend_box = front.legends[0].get_window_extent(front.canvas.get_renderer())
    assert all(plots._overlap(legend_box, ax.get_window_extent()) == 0 for ax in front.axes)  # outside the data


def test_one_seed_draws_no_error_bars_on_the_front() -> None:
    """With one seed there is no spread over seeds: the front shows markers alone (no zero-length bars or caps)."""
    from matplotlib.collections import LineCollection

    one = plots.reward_front_figure(read_rows(EXAMPLES / "comparison.csv"), [])
    assert not [c for c in one.axes[0].collections if isinstance(c, LineCollection)]
    three = plots.reward_front_figure(read_rows(EXAMPLES / "reviews_paper" / "comparison.csv"), [])
    assert [c for c in three.axes[0].collections if isinstance(c, LineCollection)]


def test_three_objectives_get_a_front_per_pair() -> None:
    rows = read_rows(EXAMPLES / "ablation" / "comparison.csv")
    fig = plots.reward_front_figure(rows, [])
    axes = [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]
    assert axes == [("reward: sentiment", "reward: conciseness"), ("reward: sentiment", "reward: specificity"),
                    ("reward: conciseness", "reward: specificity")]
    for ax in fig.axes:
        assert sorted(t.get_text() for t in ax.texts) == sorted(r["label"] for r in rows)
