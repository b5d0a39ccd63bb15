"""Decoding the log-linear mixture π_λ(y|x) ∝ Π_k π_k(y|x)^λ_k of K causal LMs (docs/design.md §1, §4).

The sequence-level mixture has no tractable normaliser, so decoding approximates it token by token, as
decoding-time methods do (MOD, Shi et al. 2024):

    log p(y_t | x, y_<t) = log_softmax_v( Σ_k λ_k · log_softmax_v(logits_k) )

with one KV cache per policy and only the newest token fed at each step. The token-level mixture is a
different distribution from the sequence-level one; `LogLinearMixture.sample_sequence_level` closes the gap
by sampling-importance-resampling (draw n candidates from the token-level mixture q, weight each by
Π_k π_k^λ_k / q, resample one).

Pure torch + transformers: no Hydra, TRL or W&B here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mpo.core.simplex import check_simplex
from mpo.models.adapters import component_logits, new_caches
from mpo.models.decoding import (check_decoding, eos_tensor, position_ids_from_mask, response_mask, select_tokens,
                                 trim_finished)
from mpo.models.logprobs import forward_logprobs, gathered_logprobs, in_row_blocks
from mpo.models.policies import Decoding, Generation, decode_responses, encode_prompts, right_padded, split_generated
from mpo.models.resampling import SequenceLevelSample, sample_defensive

log = logging.getLogger(__name__)

# How often (in decoding steps) the loop asks whether every row has finished. Asking forces a host-device
# sync, so it is not done every step; the output is trimmed to HF's length afterwards either way.
_FINISHED_CHECK_EVERY = 8
# Below this mean effective sample size, resampling hardly corrects the token-level mixture (see MixturePolicy).
_MIN_RESAMPLING_ESS = 2.0


# ---------------------------------------------------------------------------------------------- validation


def _check_weights(weights: Sequence[float] | torch.Tensor, num_models: int) -> list[float]:
    """The mixture weights λ as Python floats, after checking that they lie on the simplex Δ_K."""
    values = torch.as_tensor(weights, dtype=torch.float64).detach().cpu()
    if values.ndim != 1:
        raise ValueError(f"weights must be a 1-D sequence with one weight per model, got shape {tuple(values.shape)}")
    return check_simplex(values.tolist(), num_models, what="model")


def _check_vocabularies(models: Sequence[PreTrainedModel], tokenizers: Sequence | None) -> int:
    """The shared vocabulary size; a ValueError naming the first model (or tokenizer) that differs."""
    sizes = [int(model.config.vocab_size) for model in models]
    for k, size in enumerate(sizes):
        if size != sizes[0]:
            raise ValueError(
                f"all models of a mixture must share one vocabulary: model {k} has vocab_size {size} but "
                f"model 0 has {sizes[0]}; mix only policies fine-tuned from one base model and tokenizer"
            )
    if tokenizers is not None:
        if len(tokenizers) != len(models):
            raise ValueError(f"got {len(tokenizers)} tokenizers for {len(models)} models; pass one per model")
        vocab0 = tokenizers[0].get_vocab()
        for k, tokenizer in enumerate(tokenizers[1:], start=1):
            vocab = tokenizer.get_vocab()
            if vocab != vocab0:
                differing = sorted(set(vocab.items()) ^ set(vocab0.items()))[:3]
                raise ValueError(
                    f"all models of a mixture must share one vocabulary: tokenizer {k} differs from tokenizer 0 "
                    f"({len(vocab)} vs {len(vocab0)} entries; e.g. (token, id) pairs in one only: {differing})"
                )
    return sizes[0]


def _mix_unnormalised(logits: Sequence[torch.Tensor], weights: Sequence[float], device) -> torch.Tensor:
    """Σ_k λ_k log_softmax(logits_k) over the last dim, accumulated in place in float32."""
    mixed = None
    for weight, model_logits in zip(weights, logits):
        logprobs = torch.log_softmax(model_logits.float(), dim=-1).to(device)  # a fresh tensor: safe in place
        mixed = logprobs.mul_(weight) if mixed is None else mixed.add_(logprobs, alpha=weight)
    return mixed


def _mix(logits: Sequence[torch.Tensor], weights: Sequence[float], device) -> torch.Tensor:
    """log_softmax(Σ_k λ_k log_softmax(logits_k)) over the last dim."""
    return torch.log_softmax(_mix_unnormalised(logits, weights, device), dim=-1)


class IncrementalDecoder:
    """One ``DynamicCache`` per policy; `advance` feeds only the newest token to every policy.

    ``logprobs`` holds the mixture's normalised next-token log-probs [B, V] at the current position and
    ``log_normaliser`` [B] the log of the per-step normaliser Z_t = Σ_v Π_k π_k(v|x, y_<t)^λ_k (≤ 1 by
    Hölder), so that Σ_k λ_k log π_k(v|·) = logprobs[v] + log_normaliser.
    """

    def __init__(self, models, weights, input_ids, attention_mask, max_new_tokens: int, device):
        batch, prompt_len = input_ids.shape
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.device)
        self._models, self._weights, self._device = models, weights, device
        # One preallocated mask for the whole decode; each step passes a growing prefix of it.
        self._mask = torch.ones(batch, prompt_len + max_new_tokens, dtype=mask.dtype, device=mask.device)
        self._mask[:, :prompt_len] = mask
        self._length = prompt_len
        position_ids = position_ids_from_mask(mask)
        self._next_position = position_ids[:, -1:] + 1
        # adapters of one base share a cache, one row block each (mpo.models.adapters): one forward runs them all
        self._caches = new_caches(models)
        self.logprobs = self._forward(input_ids, mask, position_ids)

    def _forward(self, input_ids, attention_mask, position_ids) -> torch.Tensor:
        logits = component_logits(self._models, self._caches, input_ids, attention_mask, position_ids)
        mixed = _mix_unnormalised([output[:, -1] for output in logits], self._weights, self._device)
        self.log_normaliser = torch.logsumexp(mixed, dim=-1)
        return mixed.sub_(self.log_normaliser[:, None])

    def advance(self, next_tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per row; returns (and stores) the mixture's log-probs for the next position."""
        if self._length >= self._mask.shape[1]:
            raise RuntimeError("IncrementalDecoder advanced past the max_new_tokens it was built for")
        self._length += 1
        position_ids = self._next_position
        self.logprobs = self._forward(next_tokens[:, None], self._mask[:, : self._length], position_ids)
        self._next_position = position_ids + 1
        return self.logprobs


class LogLinearMixture:
    """The log-linear mixture Π_k π_k^λ_k of K causal LMs that share one vocabulary, decoded token by token.

    A model may be an `mpo.models.adapters.AdapterComponent`: K LoRA adapters on one base in memory, run together.
    Models with zero weight are kept (they count in `component_logprobs`) but are not run while decoding.
    """

    def __init__(self, models: Sequence[PreTrainedModel], weights: Sequence[float] | torch.Tensor, *,
                 tokenizers: Sequence[PreTrainedTokenizerBase] | None = None):
        models = list(models)
        if not models:
            raise ValueError("a mixture needs at least one model; got none")
        self.vocab_size = _check_vocabularies(models, tokenizers)
        self.models = [model.eval() for model in models]
        self.weights = _check_weights(weights, len(models))
        self._active = [k for k, weight in enumerate(self.weights) if weight > 0]
        self.device = self.models[self._active[0]].device

    @property
    def num_models(self) -> int:
        return len(self.models)

    def vertex(self, k: int) -> LogLinearMixture:
        """π_k alone, as a mixture (its token-level law is π_k's own): what defensive resampling draws from."""
        return LogLinearMixture([self.models[k]], [1.0])

    def _active_models(self) -> tuple[list[PreTrainedModel], list[float]]:
        return [self.models[k] for k in self._active], [self.weights[k] for k in self._active]

    # ----------------------------------------------------------------------------------------- scoring

    @torch.no_grad()
    def next_token_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised mixture log-probs [B, V] for the token after the last position (left padding allowed)."""
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        models, weights = self._active_models()
        logits = component_logits(models, None, input_ids, mask, position_ids_from_mask(mask))
        return _mix([output[:, -1] for output in logits], weights, self.device)

    def _response_mask(self, input_ids, attention_mask, response_mask_, prompt_len, eos_token_id) -> torch.Tensor:
        if (response_mask_ is None) == (prompt_len is None):
            raise ValueError("pass exactly one of response_mask (bool [B, L]) or prompt_len (int)")
        mask = response_mask(input_ids, prompt_len, eos_token_id) if response_mask_ is None else response_mask_.bool()
        if attention_mask is not None:
            mask = mask & attention_mask.bool()
        if mask[:, 0].any():
            raise ValueError("the first token cannot be scored (it has no context); the prompt must be non-empty")
        return mask[:, 1:].to(self.device)

    def _forward_args(self, input_ids, attention_mask):
        """(input_ids, attention_mask, position_ids) as every model of the mixture is run on them."""
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        return input_ids, mask, position_ids_from_mask(mask)

    @torch.no_grad()
    def component_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                           response_mask: torch.Tensor | None = None, *, prompt_len: int | None = None,
                           eos_token_id: int | Sequence[int] | None = None) -> torch.Tensor:
        """log π_k(y|x) for every model k (zero-weight ones too): [B, K], summed over the response tokens.

        The response is ``response_mask`` (bool [B, L]) or everything from ``prompt_len`` on (cut after the
        first ``eos_token_id`` when given).
        """
        mask = self._response_mask(input_ids, attention_mask, response_mask, prompt_len, eos_token_id)
        args = self._forward_args(input_ids, attention_mask)
        columns = [forward_logprobs(model, *args).to(self.device).masked_fill(~mask, 0.0).sum(-1)
                   for model in self.models]
        return torch.stack(columns, dim=-1)

    @torch.no_grad()
    def sequence_logprob(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                         response_mask: torch.Tensor | None = None, *, prompt_len: int | None = None,
                         eos_token_id: int | Sequence[int] | None = None) -> torch.Tensor:
        """Σ_t log p_mix(y_t | x, y_<t) under the token-level mixture: [B]. Arguments as `component_logprobs`."""
        mask = self._response_mask(input_ids, attention_mask, response_mask, prompt_len, eos_token_id)
        ids, attention, positions = self._forward_args(input_ids, attention_mask)
        models, weights = self._active_models()

        def score(rows: slice) -> torch.Tensor:  # [rows, L-1]: the mixture needs every model's full law, per block
            logits = [model(input_ids=ids[rows].to(model.device), attention_mask=attention[rows].to(model.device),
                            position_ids=positions[rows].to(model.device)).logits[:, :-1] for model in models]
            mixed = _mix_unnormalised(logits, weights, self.device)
            return gathered_logprobs(mixed, ids[rows, 1:].to(self.device))

        token_logp = in_row_blocks(ids.shape[0], ids.shape[1], self.vocab_size, score)
        return token_logp.masked_fill(~mask, 0.0).sum(-1)

    @torch.no_grad()
    def scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, prompt_len: int,
               eos_token_id: int | Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(`component_logprobs` [B, K], `sequence_logprob` [B]) from one forward of each model, not two."""
        mask = self._response_mask(input_ids, attention_mask, None, prompt_len, eos_token_id)
        ids, attention, positions = self._forward_args(input_ids, attention_mask)
        models, weights = self._active_models()

        def score(rows: slice) -> torch.Tensor:  # [rows, L-1, K+1]: every model's token log-probs, then the mixture's
            logits = [model(input_ids=ids[rows].to(model.device), attention_mask=attention[rows].to(model.device),
                            position_ids=positions[rows].to(model.device)).logits[:, :-1] for model in self.models]
            targets = ids[rows, 1:].to(self.device)
            columns = [gathered_logprobs(out.to(self.device), targets) for out in logits]
            active = [logits[self.models.index(m)] for m in models]
            columns.append(gathered_logprobs(_mix_unnormalised(active, weights, self.device), targets))
            return torch.stack(columns, -1)

        summed = in_row_blocks(ids.shape[0], ids.shape[1], self.vocab_size * (self.num_models + 1), score)
        summed = summed.masked_fill(~mask[..., None], 0.0).sum(1)
        return summed[:, :-1], summed[:, -1]

    @torch.no_grad()
    def grid_log_normalisers(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                             response_mask: torch.Tensor | None = None, *, grid: torch.Tensor,
                             prompt_len: int | None = None,
                             eos_token_id: int | Sequence[int] | None = None) -> torch.Tensor:
        """[B, G] A_λ(y) = Σ_t log Σ_v Π_k π_k(v|x, y_<t)^λ_k over the response tokens, for every row λ of ``grid``
        [G, K] (every model runs, whatever the mixture's own weights): log q_λ(y) = Σ_k λ_k log π_k(y) − A_λ(y)
        for the token-level mixture at λ (`mpo.core.token_game`). Arguments as `component_logprobs`."""
        mask = self._response_mask(input_ids, attention_mask, response_mask, prompt_len, eos_token_id)
        ids, attention, positions = self._forward_args(input_ids, attention_mask)
        points = torch.as_tensor(grid, dtype=torch.float32, device=self.device)
        if points.ndim != 2 or points.shape[1] != self.num_models:
            raise ValueError(f"grid must be [G, K={self.num_models}], got shape {tuple(points.shape)}")

        def score(rows: slice) -> torch.Tensor:  # [rows, G], summed over the rows' response tokens
            logps = torch.stack([torch.log_softmax(model(input_ids=ids[rows].to(model.device),
                                                         attention_mask=attention[rows].to(model.device),
                                                         position_ids=positions[rows].to(model.device)
                                                         ).logits[:, :-1].float(), -1).to(self.device)
                                 for model in self.models], -1)  # [rows, L-1, V, K]
            per_token = torch.stack([torch.logsumexp(logps @ lam, -1) for lam in points], -1)  # [rows, L-1, G]
            return per_token.double().masked_fill(~mask[rows, :, None], 0.0).sum(1)

        return in_row_blocks(ids.shape[0], ids.shape[1], self.vocab_size * (self.num_models + 1), score)

    # -------------------------------------------------------------------------------------- generation

    def decoder(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                max_new_tokens: int = 1) -> IncrementalDecoder:
        """An incremental decoder primed on the prompt (for callers that pick tokens themselves)."""
        models, weights = self._active_models()
        return IncrementalDecoder(models, weights, input_ids.to(self.device), attention_mask, max_new_tokens,
                                  self.device)

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, max_new_tokens: int,
                 min_new_tokens: int = 0, temperature: float = 1.0, top_p: float = 1.0, do_sample: bool = True,
                 seed: int | None = None, generator: torch.Generator | None = None,
                 eos_token_id: int | Sequence[int] | None = None, pad_token_id: int | None = None,
                 mode: str = "token", num_candidates: int = 1) -> torch.Tensor:
        """Sample (or, with ``do_sample=False``, greedily decode) from the mixture; LongTensor [B, P+T].

        HF's format: the prompt, then the new tokens; rows that hit EOS are padded with ``pad_token_id``
        (default: the first EOS id), and decoding stops once every row has finished. ``temperature`` and
        ``top_p`` act on the mixed log-probs. ``seed`` seeds a private generator (same draws as
        ``torch.manual_seed(seed)`` before HF ``generate``). ``mode="sequence"`` resamples one of
        ``num_candidates`` token-level samples per prompt toward the sequence-level mixture (see
        `sample_sequence_level`).
        """
        kwargs = dict(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, temperature=temperature,
                      top_p=top_p, seed=seed, generator=generator, eos_token_id=eos_token_id,
                      pad_token_id=pad_token_id)
        if mode == "sequence":
            if not do_sample:
                raise ValueError("mode='sequence' samples candidates; it cannot be combined with do_sample=False")
            return self.sample_sequence_level(input_ids, attention_mask, num_candidates=num_candidates,
                                              **kwargs).sequences
        if mode != "token":
            raise ValueError(f"mode must be 'token' or 'sequence', got {mode!r}")
        return self._decode(input_ids, attention_mask, do_sample=do_sample, **kwargs)[0]

    def _decode(self, input_ids, attention_mask, *, max_new_tokens, min_new_tokens, temperature, top_p, do_sample,
                seed, generator, eos_token_id, pad_token_id, track_weights: bool = False):
        """The decode loop. Returns (sequences [B, P+T'], and when ``track_weights`` each row's log importance
        weight Σ_t [Σ_k λ_k log π_k(y_t|·) − log q_t(y_t)] toward the sequence-level mixture, q_t being the
        sampling distribution actually used — temperature, top-p, min_new_tokens included — else None).

        The weight needs no second pass over the responses: each step's target term is the mixed log-prob
        plus the decoder's log-normaliser (with plain sampling the increment is just log Z_t)."""
        check_decoding(max_new_tokens, min_new_tokens, temperature, top_p)
        input_ids = input_ids.to(self.device)
        if generator is None and seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        eos = eos_tensor(eos_token_id, self.device)
        if pad_token_id is None:
            pad_token_id = 0 if eos is None else (eos_token_id if isinstance(eos_token_id, int) else eos_token_id[0])
        pad = int(pad_token_id)
        batch, prompt_len = input_ids.shape
        sequences = input_ids.new_full((batch, prompt_len + max_new_tokens), pad)
        sequences[:, :prompt_len] = input_ids
        unfinished = torch.ones(batch, dtype=torch.bool, device=self.device)
        log_weights = torch.zeros(batch, device=self.device) if track_weights else None
        decoder = self.decoder(input_ids, attention_mask, max_new_tokens)
        for step in range(max_new_tokens):
            scores = decoder.logprobs
            banned = eos is not None and step < min_new_tokens
            # select_tokens and the EOS ban edit `scores` in place; keep the mixture's own log-probs where they would
            mixed = scores.clone() if track_weights and (banned or temperature != 1.0 or top_p < 1.0) else scores
            if banned:
                scores[:, eos] = -math.inf
            next_tokens, token_logq = select_tokens(scores, temperature, top_p, do_sample, generator, track_weights)
            if track_weights:
                token_target = mixed.gather(-1, next_tokens[:, None]).squeeze(-1) + decoder.log_normaliser
                log_weights += (token_target - token_logq) * unfinished
            if eos is not None:
                next_tokens = torch.where(unfinished, next_tokens, pad)
                unfinished &= ~torch.isin(next_tokens, eos)
            sequences[:, prompt_len + step] = next_tokens
            if step + 1 == max_new_tokens:
                break
            if eos is not None and step % _FINISHED_CHECK_EVERY == _FINISHED_CHECK_EVERY - 1 and not unfinished.any():
                break
            decoder.advance(next_tokens)
        return trim_finished(sequences, prompt_len, eos), log_weights

    @torch.inference_mode()
    def sample_sequence_level(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                              num_candidates: int, max_new_tokens: int, min_new_tokens: int = 0,
                              temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None,
                              generator: torch.Generator | None = None,
                              eos_token_id: int | Sequence[int] | None = None,
                              pad_token_id: int | None = None) -> SequenceLevelSample:
        """Sampling-importance-resampling toward the sequence-level mixture Π_k π_k(y|x)^λ_k / Z(x).

        Draws ``num_candidates`` responses per prompt from the token-level mixture q (with the given
        temperature / top-p: that is the proposal), weights each by w ∝ exp(Σ_k λ_k log π_k(y|x) − log q(y|x))
        and resamples one per prompt. As ``num_candidates`` grows the result approaches the target (on q's
        support); the effective sample size says how far q is from it. The weights are accumulated while
        decoding (see `_decode`): no model runs twice.
        """
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
        input_ids = input_ids.to(self.device)
        if generator is None and seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        batch = input_ids.shape[0]
        prompt_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(self.device)
        candidates, log_weights = self._decode(
            input_ids.repeat_interleave(num_candidates, dim=0), prompt_mask.repeat_interleave(num_candidates, dim=0),
            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, temperature=temperature, top_p=top_p,
            do_sample=True, seed=None, generator=generator, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
            track_weights=True)
        log_weights = log_weights.view(batch, num_candidates)
        probs = torch.softmax(log_weights, dim=-1)
        chosen = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        candidates = candidates.view(batch, num_candidates, -1)
        return SequenceLevelSample(
            sequences=candidates[torch.arange(batch, device=self.device), chosen],
            candidates=candidates,
            log_weights=log_weights,
            effective_sample_size=1.0 / (probs**2).sum(-1),
        )


class MixturePolicy:
    """`LogLinearMixture` behind the text interface of `mpo.models.policies.HFPolicy`: prompts in, responses out."""

    def __init__(self, mixture: LogLinearMixture, tokenizer: PreTrainedTokenizerBase, *, mode: str = "token",
                 num_candidates: int = 1, defensive_share: float | None = None):
        if tokenizer.padding_side != "left":
            raise ValueError("the tokenizer pads on the right; generation continues from the right edge of every "
                             "prompt, so set tokenizer.padding_side = 'left' (mpo.models.policies.load_tokenizer does)")
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token = tokenizer.eos_token")
        self.mixture, self.tokenizer = mixture, tokenizer
        self.mode, self.num_candidates, self.defensive_share = mode, num_candidates, defensive_share
        self.resampling_ess: list[float] = []  # per prompt, in sequence mode

    def generate(self, prompts: list[str], decoding: Decoding) -> list[str]:
        return self.generate_tokens(prompts, decoding).responses

    @torch.no_grad()
    def generate_tokens(self, prompts: list[str], decoding: Decoding) -> Generation:
        """Responses as text and as the sampled token ids, whether each finished, and (sequence mode) log Ẑ(x)
        per response from its own candidates: log mean_i w_i, unbiased for Z(x) = Σ_y Π_k π_k(y|x)^λ_k."""
        # One generator across batches, seeded once: the same stream HFPolicy draws from the global RNG.
        generator = torch.Generator(device=self.mixture.device).manual_seed(decoding.seed)
        eos = self.tokenizer.eos_token_id
        out = Generation([], [], [], [])
        for start in range(0, len(prompts), decoding.batch_size):
            batch = encode_prompts(self.tokenizer, prompts[start : start + decoding.batch_size], self.mixture.device)
            kwargs = dict(max_new_tokens=decoding.max_new_tokens, temperature=decoding.temperature, top_p=decoding.top_p,
                          generator=generator, eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id)
            if self.mode == "sequence":
                drawn = self._resample(batch, kwargs)
                sequences = drawn.sequences
                self.resampling_ess += drawn.effective_sample_size.tolist()
                log_z = torch.logsumexp(drawn.log_weights.double(), -1) - math.log(self.num_candidates)
                out.log_normaliser += log_z.tolist()
            else:
                sequences = self.mixture.generate(**batch, **kwargs)
            out.extend(decode_responses(self.tokenizer, sequences, batch["input_ids"].shape[1]),
                       *split_generated(sequences, batch["attention_mask"], eos))
        self._check_resampling()
        return out

    def _resample(self, batch: dict, kwargs: dict) -> SequenceLevelSample:
        """One candidate per prompt toward the sequence-level mixture: from token-level candidates, or defensively."""
        if self.defensive_share is None:
            return self.mixture.sample_sequence_level(**batch, num_candidates=self.num_candidates, **kwargs)
        if kwargs["temperature"] != 1.0 or kwargs["top_p"] < 1.0:
            raise ValueError("defensive resampling draws from the policies' own laws: it needs temperature 1 and "
                             "top_p 1 (eval.temperature=1 eval.top_p=1, or method.defensive_share=null)")
        return sample_defensive(self.mixture, **batch, num_candidates=self.num_candidates, share=self.defensive_share,
                                max_new_tokens=kwargs["max_new_tokens"], generator=kwargs["generator"],
                                eos_token_id=kwargs["eos_token_id"], pad_token_id=kwargs["pad_token_id"])

    @torch.no_grad()
    def response_logprobs(self, prompt_ids: list[list[int]], completion_ids: list[list[int]],
                          log_normaliser: list[float] | None = None, batch_size: int = 64) -> torch.Tensor:
        """[B] log-density of sampled responses under what this policy decodes: the token-level mixture (exact),
        or the sequence-level one, Σ_k λ_k log π_k(y|x) − log Ẑ(x) with ``log_normaliser`` from
        `generate_tokens` (Ẑ estimated from the same candidates; resampling only approximates this target)."""
        if self.mode == "sequence" and (log_normaliser is None or len(log_normaliser) != len(prompt_ids)):
            raise ValueError("a sequence-level mixture's density needs log Ẑ(x) per response, from generate_tokens")
        weights = torch.tensor(self.mixture.weights, dtype=torch.float64)
        out = []
        for start in range(0, len(prompt_ids), batch_size):
            ids, mask, completion = right_padded(prompt_ids[start : start + batch_size],
                                                 completion_ids[start : start + batch_size], self.tokenizer.pad_token_id)
            if self.mode == "token":
                out.append(self.mixture.sequence_logprob(ids, mask, response_mask=completion).double().cpu())
            else:
                components = self.mixture.component_logprobs(ids, mask, response_mask=completion).double().cpu()
                out.append(components @ weights - torch.tensor(log_normaliser[start : start + batch_size],
                                                               dtype=torch.float64))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def _check_resampling(self) -> None:
        """Resampling among fewer than ~2 effective candidates barely moves toward the sequence-level mixture
        (on the enumerable study, total variation falls roughly as 1/ESS): say so, with the fix."""
        if self.mode != "sequence" or not self.resampling_ess:
            return
        mean_ess = sum(self.resampling_ess) / len(self.resampling_ess)
        if mean_ess < _MIN_RESAMPLING_ESS:
            log.warning("sequence-level decoding resampled among %.2f effective candidates of %d on average: the "
                        "output is still close to the token-level mixture; raise method.num_candidates",
                        mean_ess, self.num_candidates)
