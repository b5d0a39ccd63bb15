"""The RL stage solves the objective every method in a comparison solves, max_π E[r] − β·KL(π‖π_ref).

1. Exact maths on an enumerable problem (a categorical policy over a few responses): the expected gradient
   of RLOO's loss — leave-one-out baseline, β·log(π/π_ref) subtracted from each sequence's reward — equals
   −∇(E_π[r] − β·KL(π‖π_ref)), summed over every tuple of G samples. GRPO's loss (group-mean baseline, β·k3
   added to the loss) does not: its expected gradient is −(G−1)/G·∇E_π[r] + β·∇KL(π_ref‖π), the forward KL.
2. TRL's RLOOTrainer, built by `mpo.training.rl` with a separate reference, computes exactly that RLOO
   estimator on its own batch: the same advantages, and the same parameter gradient as a plain re-implementation
   from the sampled token ids.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from mpo.training.rl import train_rl
from tests.test_rl import PROMPTS, count_good, rl_args, save_tiny_policy

N_RESPONSES, GROUP, BETA = 5, 3, 0.3


def problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(N_RESPONSES, generator=gen, dtype=torch.float64, requires_grad=True)
    ref_logp = torch.log_softmax(torch.randn(N_RESPONSES, generator=gen, dtype=torch.float64), 0)
    reward = torch.randn(N_RESPONSES, generator=gen, dtype=torch.float64)
    return theta, ref_logp, reward


def kl_regularised_objective(theta, ref_logp, reward, beta) -> torch.Tensor:
    logp = torch.log_softmax(theta, 0)
    return (logp.exp() * (reward - beta * (logp - ref_logp))).sum()


def leave_one_out(values: torch.Tensor) -> torch.Tensor:
    """values − the mean of the other entries of the group (last dim)."""
    g = values.shape[-1]
    return values - (values.sum(-1, keepdim=True) - values) / (g - 1)


def expected_gradient(theta, surrogate) -> torch.Tensor:
    """Σ over all G-tuples y of P(y)·∇surrogate(y), P(y) = Π_j π(y_j) held fixed (samples do not move)."""
    logp = torch.log_softmax(theta, 0)
    tuples = torch.tensor(list(itertools.product(range(N_RESPONSES), repeat=GROUP)))
    prob = logp.detach()[tuples].sum(-1).exp()
    total = (prob * surrogate(logp, tuples)).sum()
    return torch.autograd.grad(total, theta)[0]


def rloo_loss(ref_logp, reward, beta):
    """TRL RLOO's loss at its first iteration (ratio 1): −mean_j A_j·log π(y_j), A = LOO(r − β·log π/π_ref)."""

    def surrogate(logp, tuples):
        shaped = reward[tuples] - beta * (logp.detach()[tuples] - ref_logp[tuples])
        return -(leave_one_out(shaped) * logp[tuples]).mean(-1)

    return surrogate


def grpo_loss(ref_logp, reward, beta):
    """TRL GRPO's loss on one-token responses (scale_rewards="none"): −mean_j (A_j·log π(y_j) − β·k3_j),
    A = r − group mean, k3 = exp(log π_ref − log π) − (log π_ref − log π) − 1 differentiated through log π."""

    def surrogate(logp, tuples):
        r = reward[tuples]
        advantage = r - r.mean(-1, keepdim=True)
        delta = ref_logp[tuples] - logp[tuples]
        k3 = delta.exp() - delta - 1
        return (-(advantage * logp[tuples]) + beta * k3).mean(-1)

    return surrogate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rloo_loss_is_an_unbiased_gradient_of_the_kl_regularised_objective(seed):
    theta, ref_logp, reward = problem(seed)
    exact = torch.autograd.grad(kl_regularised_objective(theta, ref_logp, reward, BETA), theta)[0]
    got = expected_gradient(theta, rloo_loss(ref_logp, reward, BETA))
    torch.testing.assert_close(got, -exact, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grpo_loss_follows_the_forward_kl_instead(seed):
    theta, ref_logp, reward = problem(seed)
    logp = torch.log_softmax(theta, 0)
    expected_reward = (logp.exp() * reward).sum()
    forward_kl = (ref_logp.exp() * (ref_logp - logp)).sum()
    want = -(GROUP - 1) / GROUP * torch.autograd.grad(expected_reward, theta, retain_graph=True)[0] \
        + BETA * torch.autograd.grad(forward_kl, theta)[0]
    got = expected_gradient(theta, grpo_loss(ref_logp, reward, BETA))
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    exact = torch.autograd.grad(kl_regularised_objective(theta, ref_logp, reward, BETA), theta)[0]
    assert (got + exact).abs().max() > 1e-2  # not the gradient of E[r] − β·KL(π‖π_ref)


# ----------------------------------------------------------------------------- TRL's RLOOTrainer itself


def sequence_logprob(model, ids, mask, completion_len) -> torch.Tensor:
    """Σ over the completion's unmasked tokens of log π(token | prefix), by one plain forward."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, -completion_len - 1 : -1]
    token_logp = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, -completion_len:, None]).squeeze(-1)
    return (token_logp * mask[:, -completion_len:]).sum(-1)


def test_trl_rloo_computes_the_kl_regularised_estimator(tmp_path, monkeypatch):
    from trl import RLOOTrainer

    policy = save_tiny_policy(tmp_path / "policy", seed=0)
    reference = save_tiny_policy(tmp_path / "reference", seed=1, sharpness=3.0)  # KL term far from 0
    score, loss_of, seen = RLOOTrainer._generate_and_score_completions, RLOOTrainer._compute_loss, {}

    def forward(self, model, inputs):
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
        mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
        return sequence_logprob(model, ids, mask, inputs["completion_ids"].shape[1])

    def spy_advantages(self, generation_batch):
        out = score(self, generation_batch)  # grouped by prompt here (TRL shuffles afterwards)
        with torch.no_grad():
            logp, ref_logp = forward(self, self.model, out), forward(self, self.ref_model, out)
        texts = self.processing_class.batch_decode(out["completion_ids"], skip_special_tokens=True)
        shaped = torch.tensor(count_good([], texts), dtype=logp.dtype) - self.beta * (logp - ref_logp)
        seen["advantages"] = (out["advantages"], leave_one_out(shaped.view(-1, self.num_generations)).view(-1))
        seen["kl"] = float((logp - ref_logp).mean())
        return out

    def spy_loss(self, model, inputs):
        loss = loss_of(self, model, inputs)
        params = [p for p in model.parameters() if p.requires_grad]
        plain = -(inputs["advantages"] * forward(self, model, inputs)).mean()  # −mean_j A_j·∇log π(y_j)
        seen["grads"] = (torch.autograd.grad(loss, params, retain_graph=True), torch.autograd.grad(plain, params))
        return loss

    monkeypatch.setattr(RLOOTrainer, "_generate_and_score_completions", spy_advantages)
    monkeypatch.setattr(RLOOTrainer, "_compute_loss", spy_loss)
    train_rl(policy, PROMPTS, [count_good], tmp_path / "rl", beta=0.1, algorithm="rloo", trl_args=rl_args(1),
             ref_model_path=reference)
    trl_advantages, plain_advantages = seen["advantages"]
    assert abs(seen["kl"]) > 1.0  # the β·KL term really shapes the reward here
    torch.testing.assert_close(trl_advantages, plain_advantages.to(trl_advantages.dtype), atol=1e-4, rtol=1e-4)
    for trl_grad, plain_grad in zip(*seen["grads"]):
        torch.testing.assert_close(trl_grad, plain_grad, atol=1e-5, rtol=1e-4)
