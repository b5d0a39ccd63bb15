"""Bounded scoring: log-probabilities of given tokens equal the plain ``log_softmax(...).gather(...)`` formula,
whatever the budget for full-vocabulary temporaries, and no forward runs more rows than the budget allows."""

from __future__ import annotations

import pytest
import torch

import mpo.models.logprobs as logprobs
from mpo.models.logprobs import forward_logprobs, gathered_logprobs, rows_per_forward
from mpo.models.mixing import LogLinearMixture
from mpo.models.policies import logprobs_of_ids
from tests.enumerable import VOCAB, random_policy


def plain(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None]).squeeze(-1)


@pytest.fixture
def batch():
    torch.manual_seed(0)
    ids = torch.randint(0, VOCAB, (7, 6))
    mask = torch.ones_like(ids)
    mask[2, :2] = mask[5, :1] = 0  # left padding on two rows
    response = torch.zeros_like(ids, dtype=torch.bool)
    response[:, 3:] = True
    return ids, mask, response


class RowCounter(torch.nn.Module):
    """A causal LM that records the rows of every forward it runs."""

    def __init__(self, model):
        super().__init__()
        self.model, self.rows = model, []
        self.config = model.config

    @property
    def device(self):
        return self.model.device

    def forward(self, **kwargs):
        self.rows.append(kwargs["input_ids"].shape[0])
        return self.model(**kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("budget", [1, 2 * 6 * 50, 1 << 26])
def test_gathered_equals_log_softmax_then_gather(monkeypatch, dtype, budget):
    monkeypatch.setattr(logprobs, "FLOAT32_BUDGET", budget)
    torch.manual_seed(1)
    logits = (torch.randn(5, 6, 50) * 4).to(dtype)
    targets = torch.randint(0, 50, (5, 6))
    got = gathered_logprobs(logits, targets)
    assert got.dtype == torch.float32 and got.shape == (5, 6)
    torch.testing.assert_close(got, plain(logits, targets), atol=2e-6, rtol=0)


def test_rows_per_forward_keeps_the_block_within_the_budget():
    assert rows_per_forward(100, 32_000, budget=1 << 26) == 20  # 20 × 100 × 32,000 = 64.0 M ≤ 67.1 M elements
    assert rows_per_forward(4096, 152_064, budget=1 << 26) == 1  # a row wider than the budget still runs
    assert rows_per_forward(10, 100, budget=10_000) == 10


@pytest.mark.parametrize("budget", [1, 3 * 6 * VOCAB])
def test_one_policy_scores_equal_and_forwards_stay_within_the_budget(monkeypatch, batch, budget):
    ids, mask, response = batch
    model = random_policy(3)
    want = plain(model(input_ids=ids, attention_mask=mask).logits[:, :-1], ids[:, 1:])
    monkeypatch.setattr(logprobs, "FLOAT32_BUDGET", budget)
    counted = RowCounter(model)
    got = forward_logprobs(counted, ids, mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert max(counted.rows) == rows_per_forward(6, VOCAB) and sum(counted.rows) == len(ids)


def test_logprobs_of_ids_are_unchanged_by_the_budget(monkeypatch):
    model = random_policy(4)
    prompts, completions = [[1, 2], [3], [4, 4, 1]], [[2, 3, 0], [1], [0]]
    want = logprobs_of_ids(model, prompts, completions, pad_token_id=0)
    monkeypatch.setattr(logprobs, "FLOAT32_BUDGET", 1)
    torch.testing.assert_close(logprobs_of_ids(model, prompts, completions, pad_token_id=0), want, atol=1e-9, rtol=0)


def test_mixture_scores_equal_the_plain_formula_at_any_budget(monkeypatch, batch):
    ids, mask, response = batch
    models, weights = [random_policy(seed) for seed in (5, 6, 7)], [0.2, 0.5, 0.3]
    mixture = LogLinearMixture(models, weights)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = [m(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, :-1] for m in models]
    mixed = sum(w * torch.log_softmax(x.float(), -1) for w, x in zip(weights, logits))
    keep = (response & mask.bool())[:, 1:]
    want_mix = (plain(mixed, ids[:, 1:]) * keep).sum(-1)
    want_components = torch.stack([(plain(x, ids[:, 1:]) * keep).sum(-1) for x in logits], -1)
    for budget in (1, 2 * 6 * VOCAB, 1 << 26):
        monkeypatch.setattr(logprobs, "FLOAT32_BUDGET", budget)
        torch.testing.assert_close(mixture.sequence_logprob(ids, mask, response), want_mix, atol=1e-5, rtol=0)
        torch.testing.assert_close(mixture.component_logprobs(ids, mask, response), want_components,
                                   atol=1e-5, rtol=0)
