"""Small enumerable autoregressive policies: the exact anchor for MPO's estimators and decoding.

Every policy here is a table of next-token distributions, one per prefix (so the policies do not
factorise over positions), over responses of fixed length L from a vocabulary of V tokens: all V^L
responses can be listed, so F, λ*, the sequence-level mixture and the token-level mixture are exact,
and sampling is exact too. `tabular_problem` builds π_ref and K policies at a chosen KL from π_ref.

Pure tensor code (no models): used by the tests, `mpo.studies.estimator_study` and `mpo.studies.bench`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mpo.core.winrate import weighted_cdf


@dataclass(frozen=True)
class TabularProblem:
    """π_ref (column 0) and π_1..π_K (columns 1..K) for X prompts, as per-prefix log-conditionals.

    ``conditionals[t]`` is [X, V^t, V, 1+K]: log p(y_t = v | x, prefix) for every prefix of length t
    (prefixes in lexicographic order).
    """

    conditionals: list[Tensor]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(X prompts, V vocabulary, L length, K policies)."""
        first = self.conditionals[0]
        return first.shape[0], first.shape[2], len(self.conditionals), first.shape[3] - 1

    def joint(self) -> Tensor:
        """[X, V^L, 1+K] log π(y|x) of every response under every model."""
        return _joint(self.conditionals)

    def token_mixture_joint(self, weights: Tensor) -> Tensor:
        """[X, V^L] log-density of the token-level mixture: log_softmax_v(Σ_k λ_k log π_k(v|prefix)) per step."""
        lam = torch.as_tensor(weights, dtype=torch.float64)
        mixed = [torch.log_softmax((c[..., 1:] * lam).sum(-1), -1)[..., None] for c in self.conditionals]
        return _joint(mixed)[..., 0]

    def sequence_mixture_joint(self, weights: Tensor) -> Tensor:
        """[X, V^L] log π_λ(y|x) ∝ Σ_k λ_k log π_k(y|x): the sequence-level mixture MPO's λ is optimal for."""
        lam = torch.as_tensor(weights, dtype=torch.float64)
        return torch.log_softmax((self.joint()[..., 1:] * lam).sum(-1), -1)


def _joint(conditionals: list[Tensor]) -> Tensor:
    n_prompts, columns = conditionals[0].shape[0], conditionals[0].shape[3]
    logp = torch.zeros(n_prompts, 1, columns, dtype=torch.float64)
    for cond in conditionals:
        logp = (logp[:, :, None] + cond).reshape(n_prompts, -1, columns)
    return logp


def tabular_problem(*, prompts: int = 8, vocab: int = 4, length: int = 8, policies: int = 2, kl: float = 20.0,
                    seed: int = 0, ref_scale: float = 7.0, correlation: float = 0.3,
                    away: float = 1.5) -> TabularProblem:
    """π_ref with random per-prefix logits (scale ``ref_scale``) and K policies at mean KL(π_k‖π_ref) = ``kl``.

    π_k's logits are π_ref's plus s_k·δ_k, with δ_k random per prefix, correlated ``correlation`` across k
    (policies fine-tuned from one base share part of their direction; below 0, K = 2 policies pull apart) and pulled ``away`` from π_ref's
    own preferences (fine-tuning moves mass onto what π_ref finds unlikely: that is what makes KL large
    and π_ref samples useless). s_k is found by bisection so that the exact KL, averaged over prompts, is
    ``kl`` nats. The defaults (4^8 = 65,536 responses, π_ref's entropy ≈ 3 nats) reach KL ≈ 100.
    """
    gen = torch.Generator().manual_seed(seed)
    shapes = [(prompts, vocab**t, vocab) for t in range(length)]
    ref_logits = [ref_scale * torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    shared = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    columns = [[torch.log_softmax(r, -1) for r in ref_logits]]
    for k in range(policies):
        own = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        # a negative correlation gives the shared part alternating signs: the policies conflict
        sign = -1.0 if correlation < 0 and k % 2 else 1.0
        direction = [sign * math.sqrt(abs(correlation)) * c + math.sqrt(1 - abs(correlation)) * o - away * r / ref_scale
                     for c, o, r in zip(shared, own, ref_logits)]
        scale = _scale_for_kl(ref_logits, direction, kl)
        columns.append([torch.log_softmax(r + scale * d, -1) for r, d in zip(ref_logits, direction)])
    conditionals = [torch.stack([col[t] for col in columns], -1) for t in range(length)]
    return TabularProblem(conditionals)


def _kl(ref_logits: list[Tensor], direction: list[Tensor], scale: float) -> float:
    conds = [torch.stack([torch.log_softmax(r, -1), torch.log_softmax(r + scale * d, -1)], -1)
             for r, d in zip(ref_logits, direction)]
    joint = _joint(conds)
    return float((joint[..., 1].exp() * (joint[..., 1] - joint[..., 0])).sum(1).mean())


def _scale_for_kl(ref_logits: list[Tensor], direction: list[Tensor], kl: float) -> float:
    low, high = 0.0, 1.0
    while _kl(ref_logits, direction, high) < kl:
        high *= 2.0
        if high > 1e6:
            raise ValueError(f"KL {kl} nats is out of reach for this vocabulary and length")
    for _ in range(45):  # the scale to ~1e-13 of its bracket
        mid = (low + high) / 2
        low, high = (mid, high) if _kl(ref_logits, direction, mid) < kl else (low, mid)
    return (low + high) / 2


def kl_from_reference(problem: TabularProblem) -> Tensor:
    """[K] exact KL(π_k‖π_ref), averaged over prompts."""
    joint = problem.joint()
    return (joint[..., 1:].exp() * (joint[..., 1:] - joint[..., :1])).sum(1).mean(0)


def draw(log_density: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """[X, n] indices of responses drawn exactly from each prompt's distribution."""
    return torch.multinomial(log_density.exp(), n, replacement=True, generator=generator)


def total_variation(log_p: Tensor, log_q: Tensor) -> Tensor:
    """[X] total-variation distance between two distributions over the enumerated responses."""
    return 0.5 * (log_p.exp() - log_q.exp()).abs().sum(-1)


def win_rate(log_p: Tensor, log_ref: Tensor, reward: Tensor) -> Tensor:
    """[X] P(r(y) > r(y')) + ½ P(r(y) = r(y')) for y ~ p, y' ~ ref, computed exactly over the table
    (as Σ_y p(y)·F(y), F(y) = ref's mass below r(y) plus half its mass at r(y), by sorting: O(Y log Y))."""
    p, q = log_p.exp(), log_ref.exp()
    return (p * weighted_cdf(q, reward)).sum(-1)




# ------------------------------------------------------------------------------ the scale family


@dataclass(frozen=True)
class ScaleProblem:
    """π_ref over Y enumerated responses per prompt, true rewards r_k, and π_k ∝ π_ref·exp(s_k·r_k).

    π_k is the exact single-objective optimum for reward s_k·r_k (what DPO converges to), so log π_k/π_ref
    ranks responses exactly as r_k does whatever s_k is: the scales are what a DPO policy's arbitrary
    implicit-reward scale does to MPO, and nothing else changes between members of the family.
    """

    ref_logprobs: Tensor  # [X, Y]
    rewards: Tensor  # [X, Y, K]
    scales: Tensor  # [K]

    def joint(self) -> Tensor:
        """[X, Y, 1+K] log π(y|x) under π_ref and every π_k (the layout of `TabularProblem.joint`)."""
        policies = torch.log_softmax(self.ref_logprobs[..., None] + self.scales * self.rewards, dim=1)
        return torch.cat([self.ref_logprobs[..., None], policies], -1)

    def sequence_mixture_joint(self, weights: Tensor) -> Tensor:
        """[X, Y] log π_λ(y|x) ∝ Σ_k λ_k log π_k(y|x)."""
        lam = torch.as_tensor(weights, dtype=torch.float64)
        return torch.log_softmax((self.joint()[..., 1:] * lam).sum(-1), -1)

    def true_win_rates(self, log_policy: Tensor) -> Tensor:
        """[K] exact win-rate of a policy over the responses against π_ref under each true reward, mean over prompts."""
        return torch.stack([win_rate(log_policy, self.ref_logprobs, self.rewards[..., k]).mean()
                            for k in range(self.rewards.shape[2])])


def scale_problem(*, scale: float, prompts: int = 32, responses: int = 256, strength: float = 1.5,
                  correlation: float = -0.3, ref_scale: float = 1.5, seed: int = 0) -> ScaleProblem:
    """Two conflicting objectives (true rewards standard normal, correlated ``correlation``); π_1's implicit
    reward has scale ``strength``, π_2's ``scale × strength``: at ``scale`` 1 the two are symmetric, above it
    π_2 is steeper, as a DPO policy trained on near-deterministic labels is."""
    gen = torch.Generator().manual_seed(seed)
    ref = torch.log_softmax(ref_scale * torch.randn(prompts, responses, generator=gen, dtype=torch.float64), 1)
    first, other = torch.randn(2, prompts, responses, generator=gen, dtype=torch.float64)
    second = correlation * first + math.sqrt(1 - correlation**2) * other
    rewards = torch.stack([first, second], -1)
    return ScaleProblem(ref, rewards, torch.tensor([strength, scale * strength], dtype=torch.float64))


def best_in_family(problem: ScaleProblem, points: int = 1001) -> tuple[Tensor, float]:
    """The oracle: (λ, min_k true win-rate) of the best sequence-level mixture on a fine grid of λ (K = 2)."""
    best = (None, -math.inf)
    for a in torch.linspace(0, 1, points, dtype=torch.float64):
        lam = torch.stack([a, 1 - a])
        value = float(problem.true_win_rates(problem.sequence_mixture_joint(lam)).min())
        if value > best[1]:
            best = (lam, value)
    return best


# ------------------------------------------------------------------------- the variable-length family

_FORCED = -1e4  # log-probability of anything but EOS after EOS: finite, so 0·(it) = 0 in a mixture of logs


@dataclass(frozen=True)
class LengthProblem:
    """Responses of up to L tokens over V tokens, token 0 ending them (EOS; after it only EOS follows), π_ref
    autoregressive, true rewards r_1 = Σ_t score(y_t) (a per-prompt value per token: "sentiment") and
    r_2 = −length ("conciseness"), and π_k ∝ π_ref·exp(s_k·r_k) over whole responses, the exact optimum of each
    reward, with its next-token conditionals derived exactly from that joint.

    Every one of the V^L token strings is listed; those with a token after EOS have probability 0 (log
    `_FORCED`·n, which no comparison lets win). The token-level mixture of the conditionals is the law MPO's
    ``decoding=token`` samples; its distance from the sequence-level mixture grows with every step at which
    the policies disagree, and most with length.
    """

    conditionals: list[Tensor]  # [X, V^t, V, 1+K] per step t, as in TabularProblem
    rewards: Tensor  # [X, V^L, K] true rewards (−inf-free; meaningless where the string is impossible)
    canonical: Tensor  # [V^L] bool: no token after EOS

    def joint(self) -> Tensor:
        return _joint(self.conditionals)

    def token_mixture_joint(self, weights: Tensor) -> Tensor:
        lam = torch.as_tensor(weights, dtype=torch.float64)
        return _joint([torch.log_softmax((c[..., 1:] * lam).sum(-1), -1)[..., None] for c in self.conditionals])[..., 0]

    def sequence_mixture_joint(self, weights: Tensor) -> Tensor:
        lam = torch.as_tensor(weights, dtype=torch.float64)
        return torch.log_softmax((self.joint()[..., 1:] * lam).sum(-1), -1)

    def token_log_normalisers(self, weights: Tensor) -> Tensor:
        """[X, V^L] A_λ(y) = Σ_t log Σ_v Π_k π_k(v|y_<t)^{λ_k} ≤ 0, so that log q_λ(y) = Σ_k λ_k log π_k(y) − A_λ(y)."""
        lam = torch.as_tensor(weights, dtype=torch.float64)
        return (self.joint()[..., 1:] * lam).sum(-1) - self.token_mixture_joint(lam)

    def true_win_rates(self, log_policy: Tensor) -> Tensor:
        """[K] exact win-rate against π_ref under each true reward (ties ½), mean over prompts; impossible
        strings carry no mass, so their rewards never count."""
        ref = self.joint()[..., 0]
        return torch.stack([win_rate(log_policy, ref, self.rewards[..., k]).mean() for k in range(self.rewards.shape[2])])


def length_problem(*, prompts: int = 16, vocab: int = 4, length: int = 6, strength: tuple[float, float] = (1.0, 1.0),
                   eos_logit: float = -1.0, ref_scale: float = 1.0, seed: int = 0) -> LengthProblem:
    """π_ref with random per-prefix logits (EOS's shifted by ``eos_logit``), π_1 ∝ π_ref·exp(s_1·Σ_t score(y_t)),
    π_2 ∝ π_ref·exp(−s_2·length)."""
    gen = torch.Generator().manual_seed(seed)
    ref_conds = []
    for t in range(length):
        logits = ref_scale * torch.randn(prompts, vocab**t, vocab, generator=gen, dtype=torch.float64)
        logits[..., 0] += eos_logit
        conds = torch.log_softmax(logits, -1)
        ended = _ended(vocab, t)  # prefixes that already hold EOS: only EOS follows
        conds[:, ended] = torch.tensor([0.0] + [_FORCED] * (vocab - 1), dtype=torch.float64)
        ref_conds.append(conds[..., None])
    ref = _joint(ref_conds)[..., 0]  # [X, V^L]
    strings = torch.cartesian_prod(*[torch.arange(vocab)] * length) if length > 1 else torch.arange(vocab)[:, None]
    canonical = _canonical(strings)
    score = torch.randn(prompts, vocab, generator=gen, dtype=torch.float64)
    score[:, 0] = 0.0
    sentiment = score[:, strings].sum(-1)  # [X, V^L]; EOS scores 0
    conciseness = -(strings != 0).cumprod(-1).sum(-1).double().expand(prompts, -1)
    rewards = torch.stack([sentiment, conciseness], -1)
    s = torch.tensor(strength, dtype=torch.float64)
    policies = torch.log_softmax(ref[..., None] + s * rewards, 1).masked_fill(~canonical[None, :, None], -math.inf)
    joint = torch.cat([ref.masked_fill(~canonical[None], -math.inf)[..., None], policies], -1)
    return LengthProblem(_conditionals_of(joint, vocab, length), rewards, canonical)


def _ended(vocab: int, t: int) -> Tensor:
    """[V^t] bool: the prefix of length t contains EOS (token 0)."""
    if t == 0:
        return torch.zeros(1, dtype=torch.bool)
    prefixes = torch.cartesian_prod(*[torch.arange(vocab)] * t) if t > 1 else torch.arange(vocab)[:, None]
    return (prefixes == 0).any(-1)


def _canonical(strings: Tensor) -> Tensor:
    """[V^L] bool: nothing but EOS after the first EOS."""
    seen = (strings == 0).cumsum(-1) > 0
    return ~(seen & (strings != 0)).any(-1)


def _conditionals_of(joint: Tensor, vocab: int, length: int) -> list[Tensor]:
    """Per-step next-token log-conditionals of a joint law over V^L strings [X, V^L, C]; a prefix of
    probability 0 continues with EOS (log `_FORCED` elsewhere)."""
    n_prompts, _, columns = joint.shape
    out = []
    for t in range(length):
        blocks = joint.reshape(n_prompts, vocab**t, vocab, vocab ** (length - t - 1), columns)
        prefix_next = torch.logsumexp(blocks, 3)  # [X, V^t, V, C] log P(y_≤t)
        cond = prefix_next - torch.logsumexp(prefix_next, 2, keepdim=True)
        forced = torch.tensor([0.0] + [_FORCED] * (vocab - 1), dtype=torch.float64)[None, None, :, None]
        dead = torch.isneginf(torch.logsumexp(prefix_next, 2, keepdim=True)) | torch.isnan(cond)
        cond = torch.where(dead, forced.expand_as(cond), cond).clamp(min=_FORCED)
        out.append(cond)
    return out


# ------------------------------------------------------------------------ resampling laws, exactly


def sir_law(log_target: Tensor, log_components: Tensor, counts: list[int], draws: int,
            generator: torch.Generator) -> Tensor:
    """[X, Y] the law of sampling-importance-resampling toward ``log_target`` (unnormalised) from ``counts[j]``
    candidates drawn from component j of ``log_components`` [X, Y, C], weighted against the balance density
    q = Σ_j α_j q_j (α_j = counts[j]/n): one component is plain SIR; π_ref-free "defensive" resampling adds the π_k.

    P(y) = Σ_j n_j·q_j(y)·w(y)·E[1/(w(y) + S_{−j})], S_{−j} the summed weights of the other n−1 candidates (one
    j-draw left out); the expectation is averaged over ``draws`` candidate sets (smooth in w(y): far less noise
    than a histogram of resampled responses).
    """
    n_prompts, _, n_components = log_components.shape
    if len(counts) != n_components or sum(counts) < 1 or min(counts) < 0:
        raise ValueError(f"counts {counts} must be {n_components} non-negative numbers, at least one candidate")
    alpha = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    used = [j for j, c in enumerate(counts) if c > 0]
    log_q = torch.logsumexp(log_components[..., used] + alpha[used].log(), -1)
    log_w = log_target - log_q  # the target's normaliser cancels in the ratio
    w = (log_w - log_w.max(1, keepdim=True).values).exp()
    picks = [draw(log_components[..., j], draws * counts[j], generator).view(n_prompts, draws, counts[j]) for j in used]
    weights = torch.gather(w, 1, torch.cat(picks, -1).flatten(1)).view(n_prompts, draws, -1)
    total, law, first = weights.sum(-1), torch.zeros_like(w), 0
    for j in used:
        rest = total - weights[..., first]  # the other n−1 candidates: one of component j's draws left out
        law += counts[j] * log_components[..., j].exp() * w * (1.0 / (w[:, :, None] + rest[:, None, :])).mean(-1)
        first += counts[j]
    return law / law.sum(1, keepdim=True)
