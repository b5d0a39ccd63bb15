"""Side-by-side comparison of finished runs: ``python -m mpo.compare PATH... [--out DIR] [--baseline LABEL]``.

Every job writes ``results.json`` in its Hydra output dir (docs/design.md §4). This command gathers them (a run
dir, a multirun dir, single files, or a W&B project: `mpo.analysis.results`), aggregates seeds into one row per
(task, policy, label, β) — the rows of the paper's tables, `mpo.analysis.table` — and writes ``comparison.md``,
``comparison.csv`` and PNG plots (per-objective win-rates, the reward front of each pair of objectives with the MPO
preset-weight sweep, cost). Seeds are aggregated as mean and sample standard deviation (ddof=1), and the
win-rates and min win-rate also get a CI: with several seeds a Student-t interval (df = n − 1) over the
per-seed values, which covers seed-to-seed (training) variation and needs only each run's summary (so W&B runs
and older files work too; with 2-3 seeds a bootstrap over seeds cannot represent the spread); with one seed
the run's own bootstrap CI over prompts. ``min_win_rate`` of a row is the mean of the per-seed minima that
the files report (the quantity the paper reports per run), not the minimum of mean win-rates.

Only like runs are averaged: the runs of one row must differ in their seed alone. Where they differ in any other
setting (budget, eval prompts, decoding, any config key but those that cannot change a number: paths, logger,
launcher, device, threads, timeouts; `mpo.analysis.setups.NOT_SETTINGS`) the command refuses in one line naming
the row, the keys, each value and its files: compare each setting's runs on their own. It refuses rather than
splitting such runs into rows, because rows are found by their method's label (``--baseline``, the report) and
no setting gives a run another label. A results.json that is damaged, lacks a key, or holds a NaN, an Infinity
or a null where a number is needed is refused by its path; none reaches the table or report.md as "nan".

``--baseline LABEL`` adds paired differences of every other row against the row labelled LABEL in the same
(task, policy, β) block: runs paired by seed, evaluated on the same prompts (their ``per_prompt`` fingerprints
must agree), prompts resampled jointly for both runs and within each seed (`mpo.analysis.paired`);
written as ``paired_vs_<LABEL>.md`` and ``.csv`` beside the comparison and printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mpo.analysis.paired import paired_markdown, paired_table, write_paired
from mpo.analysis.report import write_report
from mpo.analysis.results import RESULTS_FILE, latest_multirun, load_results, load_wandb_runs
from mpo.analysis.table import comparison_table, table_lines, to_markdown, write_outputs
from mpo.infra.errors import UserError, one_line


# -------------------------------------------------------------------------------------------------- CLI
_EXAMPLES = """examples:
  python -m mpo.compare                                  # the latest multirun under outputs/multirun
  python -m mpo.compare outputs/multirun/compare_methods # every compare_methods sweep, seeds aggregated
  python -m mpo.compare outputs/multirun/beta outputs/runs/2026-11-23 --out cmp   # several dirs at once
  python -m mpo.compare --baseline maxmin_rlhf           # also each row minus maxmin_rlhf's, paired by seed
  python -m mpo.compare --wandb-project ENTITY/PROJECT   # the runs logged to a W&B project

Runs live under outputs/ (paths.root), or under the MPO_OUTPUTS directory when that is set."""


def outputs_root() -> Path:
    """Where runs are written unless paths.root is overridden (conf/paths/default.yaml)."""
    return Path(os.environ.get("MPO_OUTPUTS") or "outputs")


def _default_paths(parser: argparse.ArgumentParser) -> list[str]:
    root = outputs_root()
    latest = latest_multirun(root)
    if latest is None:
        parser.error(f"no PATH given, and no multirun under {root / 'multirun'} has a {RESULTS_FILE} yet: give run "
                     "or multirun dirs, or --wandb-project")
    print(f"comparing the latest multirun: {latest} (give PATHs to compare others)", file=sys.stderr)
    return [str(latest)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mpo.compare", epilog=_EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Compare runs side by side from their results.json files. "
                                                 "The runs of one row must differ in their seed alone: runs of one "
                                                 "label with another budget, eval size, decoding or any other "
                                                 "setting are refused, naming the keys; so is a damaged results "
                                                 "file or one holding NaN, by its path.")
    parser.add_argument("paths", nargs="*", help="run dirs, multirun dirs (searched recursively), results.json "
                                                 "files; none: the latest multirun")
    parser.add_argument("--out", help="output dir (default: the first PATH if it is a dir, else the cwd)")
    parser.add_argument("--wandb-project", help="also read the runs of this W&B ENTITY/PROJECT")
    parser.add_argument("--wandb-timeout", type=int, default=20, help="seconds per W&B request")
    parser.add_argument("--baseline", metavar="LABEL",
                        help="also write paired bootstrap differences of every row against the row with this "
                             "label (as the table labels rows, e.g. maxmin_rlhf, mpo)")
    parser.add_argument("--level", type=float, default=0.95,
                        help="CI level of the t-interval over seeds and of --baseline's differences (0.95)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples for --baseline (2000)")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="generator seed for --baseline (0)")
    parser.add_argument("--brief", action="store_true",
                        help="print the table alone and the report's path (the files are written all the same): "
                             "how a sweep ends")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Path]:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.paths and not args.wandb_project:
        args.paths = _default_paths(parser)
    if not 0 < args.level < 1 or args.resamples < 1:
        parser.error(f"--level must be in (0, 1) and --resamples >= 1, got {args.level} and {args.resamples}")
    try:
        results = load_results(args.paths) if args.paths else []
        if args.wandb_project:
            results += load_wandb_runs(args.wandb_project, timeout=args.wandb_timeout)
        rows = comparison_table(results, level=args.level)  # refuses runs of one row that differ beyond the seed
        paired = None if args.baseline is None else paired_table(
            results, args.baseline, resamples=args.resamples, level=args.level, seed=args.bootstrap_seed)
    except (OSError, ValueError, RuntimeError, UserError) as err:
        parser.error(one_line(err))
    table = to_markdown(rows, level=args.level)
    print("\n".join(table_lines(rows)) if args.brief else table)
    first = Path(args.paths[0]) if args.paths else None
    out_dir = Path(args.out) if args.out else first if first is not None and first.is_dir() else Path.cwd()
    written = write_outputs(rows, results, out_dir, level=args.level)
    markdown = None
    if paired is not None:
        markdown = paired_markdown(paired, args.baseline, resamples=args.resamples, level=args.level,
                                   seed=args.bootstrap_seed)
        if not args.brief:
            print(markdown)
        written.update(write_paired(paired, markdown, args.baseline, out_dir))
    command = " ".join(["python -m mpo.compare", *(argv if argv is not None else sys.argv[1:])])
    written["report"] = write_report(rows, table, paired, markdown, args.baseline, written, out_dir, command)
    if args.brief:
        print(f"report: {written['report']} (the table's notes, paired differences, plots)")
    else:
        for path in written.values():
            print(f"wrote {path}", file=sys.stderr)
    return written


def cli() -> None:
    """`mpo-compare`: `main` without its return value, which a console script would take for an exit status."""
    main()


if __name__ == "__main__":
    cli()
