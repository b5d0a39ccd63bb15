"""MaxMin-RLHF's EM for a mixture of H Bradley–Terry reward models when pairs carry no group label.

Chakraborty et al. (2024), as their released code does it: hard-assignment EM over USERS (annotators). Each
user labelled all their pairs by the preference of one unknown group h. The M-step fits one reward model r_h per
group on the pairs of the users assigned to it (TRL RewardTrainer via `train_reward_model`; each model keeps
training from its previous iteration's weights, as their persistent models do); the E-step moves every user
to the group whose model explains that user's labels best:

    group(u) = argmax_h Σ_{(x, y_c, y_r) ∈ pairs(u)} log σ(r_h(x, y_c) − r_h(x, y_r)).

It stops when no user changes group, or after ``iterations`` rounds. Two departures from their code, both
to make the procedure well defined rather than different: it starts from a seeded random, balanced assignment
(theirs is ``user % H``, which carries whatever order the users came in), and a group that the E-step leaves
empty is re-seeded from the worse-fitting half of the largest group (theirs would keep a stale model forever;
on planted 3-group data that stalled at 2/3 of users recovered, re-seeding recovered all).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainerCallback

from mpo.infra.console import bar
from mpo.scorers.reward_model import RewardModelScore
from mpo.training.reward_model import pair_rewards, train_reward_model

log = logging.getLogger(__name__)

ASSIGNMENTS = "assignments.json"


def initial_assignment(users: Sequence[Hashable], n_groups: int, seed: int) -> dict[Hashable, int]:
    """A seeded random assignment with group sizes differing by at most one (no group starts empty)."""
    shuffled = list(users)
    random.Random(seed).shuffle(shuffled)
    return {user: i % n_groups for i, user in enumerate(shuffled)}


def user_log_likelihoods(chosen: torch.Tensor, rejected: torch.Tensor, pair_users: Sequence[Hashable],
                         users: Sequence[Hashable]) -> torch.Tensor:
    """[U, H]: Σ over each user's pairs of log σ(r_h(chosen) − r_h(rejected)), from [P, H] reward tensors."""
    index = {user: i for i, user in enumerate(users)}
    rows = torch.tensor([index[u] for u in pair_users])
    per_pair = torch.nn.functional.logsigmoid(chosen - rejected)  # [P, H]
    totals = torch.zeros(len(users), per_pair.shape[1], dtype=per_pair.dtype)
    return totals.index_add_(0, rows, per_pair)


def reassign(log_likelihoods: torch.Tensor, users: Sequence[Hashable],
             pair_counts: torch.Tensor | None = None) -> dict[Hashable, int]:
    """E-step (hard): each user to the group with the highest total log-likelihood (ties: lowest index).

    A group left with no user would keep its model forever and the mixture would have fewer than H
    components (the reference code skips it); instead it takes the worse-fitting half of the largest group,
    ranked by mean log-likelihood per pair under that group's model — k-means' usual cure for empty clusters.
    """
    groups = log_likelihoods.argmax(dim=1)
    counts = torch.ones(len(users)) if pair_counts is None else pair_counts.float()
    for h in range(log_likelihoods.shape[1]):
        if (groups == h).any():
            continue
        largest = int(torch.bincount(groups, minlength=log_likelihoods.shape[1]).argmax())
        members = (groups == largest).nonzero().squeeze(1)
        fit = log_likelihoods[members, largest] / counts[members]
        groups[members[fit.argsort()[: len(members) // 2]]] = h
    return {user: int(h) for user, h in zip(users, groups.tolist())}


def learn_reward_mixture(
    backbone_path: str | Path,
    pooled_pairs: Dataset,
    out_dir: str | Path,
    *,
    n_groups: int,
    iterations: int,
    trl_args: Mapping[str, Any],
    seed: int = 0,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict[str, Any]:
    """EM over users; saves ``group_<h>/`` reward models and ``assignments.json`` into ``out_dir``.

    Returns ``iterations`` run, ``converged``, per-iteration ``changes`` (users that moved) and
    ``log_likelihood`` (total over all pairs after each E-step), ``group_sizes`` and the final
    ``assignments`` (user → group, keys as strings). The saved models are those of the last M-step, i.e.
    fitted to the assignment before the last E-step — the same assignment when ``converged``.
    """
    if n_groups < 1 or iterations < 1:
        raise ValueError(f"need n_groups >= 1 and iterations >= 1, got {n_groups} and {iterations}")
    if "user" not in pooled_pairs.column_names:
        raise ValueError("pooled pairs need a `user` column (the annotator id)")
    out_dir = Path(out_dir)
    pair_users = list(pooled_pairs["user"])
    users = _sorted_users(pair_users)
    if len(users) < n_groups:
        raise ValueError(f"{len(users)} users cannot fill {n_groups} groups")
    per_user = Counter(pair_users)
    pair_counts = torch.tensor([per_user[u] for u in users])
    assignment = initial_assignment(users, n_groups, seed)
    model_dirs: list[Path | None] = [None] * n_groups
    history: list[dict[str, Any]] = []
    for it in bar(range(iterations), desc="EM", unit="iteration"):
        model_dirs, fit_metrics = _m_step(backbone_path, pooled_pairs, pair_users, assignment, model_dirs,
                                          out_dir / f"_iter{it}", trl_args, seed + 1000 * it, callbacks)
        log_likelihoods = _score_groups(model_dirs, pooled_pairs, pair_users, users)
        new_assignment = reassign(log_likelihoods, users, pair_counts)
        changes = sum(new_assignment[u] != assignment[u] for u in users)
        history.append({"iteration": it, "changes": changes, "fit": fit_metrics,
                        "log_likelihood": float(log_likelihoods.gather(1, _column(new_assignment, users)).sum())})
        log.info("EM iteration %d: %d of %d users changed group", it, changes, len(users))
        _drop_unused_iterations(out_dir, model_dirs)
        assignment = new_assignment
        if changes == 0:
            break
    return _finish(out_dir, model_dirs, assignment, users, history)


def _m_step(backbone_path, pooled_pairs: Dataset, pair_users: list, assignment: Mapping[Hashable, int],
            previous: list[Path | None], iter_dir: Path, trl_args, seed: int, callbacks) -> tuple[list, list]:
    """One reward model per group on its users' pairs, warm-started from the group's previous model."""
    model_dirs, metrics = list(previous), []
    for h in range(len(previous)):
        rows = [i for i, u in enumerate(pair_users) if assignment[u] == h]
        if not rows:  # only when a group cannot be re-seeded (a 1-user largest group): keep its model
            metrics.append({"pairs": 0.0})
            continue
        start = previous[h] if previous[h] is not None else backbone_path
        model_dirs[h] = iter_dir / f"group_{h}"
        fit = train_reward_model(start, pooled_pairs.select(rows), model_dirs[h], trl_args=trl_args,
                                 callbacks=callbacks, seed=seed + h)
        metrics.append({"pairs": float(len(rows)), **fit})
    return model_dirs, metrics


def _score_groups(model_dirs: Sequence[Path], pairs: Dataset, pair_users: list, users: list) -> torch.Tensor:
    chosen, rejected = zip(*(pair_rewards(RewardModelScore(d), pairs) for d in model_dirs))
    return user_log_likelihoods(torch.stack(chosen, 1), torch.stack(rejected, 1), pair_users, users)


def _sorted_users(pair_users: list) -> list:
    try:
        return sorted(set(pair_users))
    except TypeError:  # mixed id types
        return sorted(set(pair_users), key=str)


def _column(assignment: Mapping[Hashable, int], users: Sequence[Hashable]) -> torch.Tensor:
    return torch.tensor([[assignment[u]] for u in users])


def _drop_unused_iterations(out_dir: Path, model_dirs: Sequence[Path | None]) -> None:
    """Keep only iteration directories that hold a current model (an emptied group keeps an older one)."""
    live = {d.parent for d in model_dirs if d is not None}
    for path in out_dir.glob("_iter*"):
        if path not in live:
            shutil.rmtree(path, ignore_errors=True)


def _finish(out_dir: Path, model_dirs: list[Path], assignment: dict, users: list, history: list) -> dict[str, Any]:
    for h, source in enumerate(model_dirs):
        target = out_dir / f"group_{h}"
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(source), str(target))
    for path in out_dir.glob("_iter*"):
        shutil.rmtree(path, ignore_errors=True)
    n_groups = len(model_dirs)
    result = {
        "iterations": len(history),
        "converged": bool(history[-1]["changes"] == 0),
        "changes": [h["changes"] for h in history],
        "log_likelihood": [h["log_likelihood"] for h in history],
        "group_sizes": [sum(1 for u in users if assignment[u] == h) for h in range(n_groups)],
        "assignments": {str(u): assignment[u] for u in users},
        # every M-step's reward models count against the budget (mpo.config.budget), not only the final ones
        "trained_sequences": sum(int(fit.get("trained_sequences", 0)) for h in history for fit in h["fit"]),
    }
    (out_dir / ASSIGNMENTS).write_text(json.dumps({**result, "history": history}, indent=2, default=float))
    return result
