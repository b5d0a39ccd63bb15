"""MaxMin-RLHF EM over users: the pieces against plain loops, and recovery of planted groups end to end."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import torch
from datasets import Dataset

from mpo.baselines.em import initial_assignment, learn_reward_mixture, reassign, user_log_likelihoods
from mpo.scorers.reward_model import RewardModelScore
from test_reward_model import FILLERS, PROMPTS, build_tiny_lm


EM_ARGS = {"max_steps": 25, "per_device_train_batch_size": 16, "learning_rate": 3e-3, "logging_steps": 25}


def likes_good(a: str, b: str) -> bool:
    return "good" in a


def likes_short(a: str, b: str) -> bool:
    return len(a.split()) < len(b.split())


def planted_pairs(users_per_group: int, pairs_per_user: int, seed: int, groups=(likes_good, likes_short)) -> Dataset:
    """Each user labels every pair by its group's rule. In each pair one response says "good", the other
    "bad", and their lengths differ and are drawn independently, so the two rules agree only half the time."""
    rng = random.Random(seed)
    rows = []
    for g, prefers in enumerate(groups):
        for k in range(users_per_group):
            for _ in range(pairs_per_user):
                lengths = rng.sample(range(0, 5), 2)
                a = " good" + "".join(" " + rng.choice(FILLERS) for _ in range(lengths[0]))
                b = " bad" + "".join(" " + rng.choice(FILLERS) for _ in range(lengths[1]))
                chosen, rejected = (a, b) if prefers(a, b) else (b, a)
                rows.append({"prompt": rng.choice(PROMPTS), "chosen": chosen, "rejected": rejected,
                             "user": f"g{g}u{k}"})
    rng.shuffle(rows)
    return Dataset.from_list(rows)


def likes_long(a: str, b: str) -> bool:
    return len(a.split()) > len(b.split())


def recovered_fraction(assignments: dict[str, int], n_groups: int) -> float:
    """Share of users grouped as planted (user "g<planted>u<k>"), under the best relabelling of the groups."""
    return max(sum(int(user[1]) == perm[h] for user, h in assignments.items())
               for perm in itertools.permutations(range(n_groups))) / len(assignments)


def test_initial_assignment_is_seeded_and_balanced():
    users = [f"u{i}" for i in range(11)]
    a, b = initial_assignment(users, 3, seed=5), initial_assignment(users, 3, seed=5)
    assert a == b and set(a) == set(users)
    assert sorted(list(a.values()).count(h) for h in range(3)) == [3, 4, 4]
    assert a != initial_assignment(users, 3, seed=6)


def test_user_log_likelihoods_match_plain_loop():
    torch.manual_seed(0)
    P, H = 30, 3
    chosen, rejected = torch.randn(P, H), torch.randn(P, H)
    pair_users = [random.Random(i).choice("abcd") for i in range(P)]
    users = ["a", "b", "c", "d"]
    got = user_log_likelihoods(chosen, rejected, pair_users, users)
    for i, user in enumerate(users):
        for h in range(H):
            expected = sum(math.log(1 / (1 + math.exp(-(chosen[p, h] - rejected[p, h]).item())))
                           for p in range(P) if pair_users[p] == user)
            assert got[i, h].item() == pytest.approx(expected, abs=1e-5)


def test_reassign_is_argmax_and_reseeds_an_empty_group():
    users = ["a", "b", "c", "d", "e", "f"]
    # Group 2 is nobody's best; group 0 (4 users) is the largest. Per pair, "b" and "d" fit group 0 worst.
    log_likelihoods = torch.tensor([[-1.0, -5, -9], [-8, -9, -9], [-2, -1, -9], [-3, -9, -9],
                                    [-2, -9, -9], [-4, -1, -9]])
    pair_counts = torch.tensor([1, 2, 1, 1, 2, 1])  # per-pair fits of group-0 users: -1, -4, -3, -1
    got = reassign(log_likelihoods, users, pair_counts)
    assert got == {"a": 0, "b": 2, "c": 1, "d": 2, "e": 0, "f": 1}
    assert reassign(log_likelihoods[:, :2], users) == {"a": 0, "b": 0, "c": 1, "d": 0, "e": 0, "f": 1}


def run_em(tmp_path, users_per_group: int, pairs_per_user: int, iterations: int, seed: int = 0,
           groups=(likes_good, likes_short)):
    backbone = build_tiny_lm(tmp_path / "lm", seed=seed)
    pooled = planted_pairs(users_per_group, pairs_per_user, seed=seed, groups=groups)
    result = learn_reward_mixture(backbone, pooled, tmp_path / "em", n_groups=len(groups), iterations=iterations,
                                  trl_args=EM_ARGS, seed=seed)
    return pooled, result


def test_em_recovers_planted_groups(tmp_path):
    pooled, result = run_em(tmp_path, users_per_group=12, pairs_per_user=16, iterations=4)
    assert recovered_fraction(result["assignments"], 2) >= 0.9, result
    assert result["converged"] and result["changes"][-1] == 0 and result["changes"][0] > 0
    assert len(result["changes"]) == result["iterations"] <= 4
    assert result["log_likelihood"][-1] > result["log_likelihood"][0]
    saved = json.loads((tmp_path / "em" / "assignments.json").read_text())
    assert saved["assignments"] == result["assignments"]
    # every group's fit in every iteration trained EM_ARGS' steps on pairs (2 sequences each)
    fits = sum(1 for h in saved["history"] for fit in h["fit"] if fit["pairs"] > 0)
    per_fit = EM_ARGS["max_steps"] * EM_ARGS["per_device_train_batch_size"] * 2
    assert fits >= 2 and result["trained_sequences"] == fits * per_fit
    assert not list((tmp_path / "em").glob("_iter*"))  # intermediate models are cleaned up
    # Each group's reward model fits its own users' labels better than the other group's users' labels.
    for h in range(2):
        mine = pooled.filter(lambda row: result["assignments"][row["user"]] == h)
        score = RewardModelScore(tmp_path / "em" / f"group_{h}")
        chosen, rejected = score(mine["prompt"], mine["chosen"]), score(mine["prompt"], mine["rejected"])
        assert (torch.tensor(chosen) > torch.tensor(rejected)).float().mean() > 0.8


# Seed 2 leaves a group empty after the first E-step (without re-seeding EM stalls at 2/3 recovered).
@pytest.mark.parametrize("seed", [pytest.param(1, marks=pytest.mark.slow), 2, pytest.param(3, marks=pytest.mark.slow)])
def test_em_recovers_three_planted_groups(tmp_path, seed):
    _, result = run_em(tmp_path, users_per_group=10, pairs_per_user=16, iterations=8, seed=seed,
                       groups=(likes_good, likes_short, likes_long))
    assert recovered_fraction(result["assignments"], 3) >= 0.9, result
