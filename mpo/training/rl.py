"""RL stage for the RLHF baselines (MORLHF, MaxMin-RLHF, Mixed-PO): TRL's RLOO (default) or GRPO.

The objective is the KL-regularised one every method in a comparison solves,
``max_π E_x[E_{y~π} r(x,y)] − β·KL(π‖π_ref)``, with ``r`` a weighted sum of our scorers (or one aggregated
scorer, e.g. the per-sample minimum of MaxMin-RLHF) and the same ``β`` as DPO (whose optimum is that of the
same objective).

RLOO (default) subtracts ``β·Σ_t log(π/π_ref)`` from each sequence's reward and uses the leave-one-out mean
of the other generations for the prompt as baseline, so its loss is a score-function estimate of exactly
``−∇(E[r] − β·KL(π‖π_ref))`` (tests/test_rl_objective.py checks this against the exact gradient on an
enumerable problem, and TRL's loss against that estimator). We pin ``normalize_advantages=False``: dividing
by the advantages' std would rescale the reward against the KL. Its logged ``kl`` is the mean per-token
log-ratio (can be < 0 on a batch).

GRPO (``method.rl.algorithm=grpo``) differs in two ways a comparison must know: its group-mean baseline
includes the sample itself (the reward gradient shrinks by (G−1)/G), and it adds ``β·k3`` per token to the
loss, differentiated directly: ``E_π[∇k3] = ∇KL(π_ref‖π)``, the gradient of the *forward* (mass-covering) KL
per token, not of ``KL(π‖π_ref)``. Two TRL defaults would change what ``β`` means, so this stage overrides
them (a caller's ``trl_args`` still win):

- GRPO divides advantages by the group's reward std (``scale_rewards="group"``), which rescales the reward
  against the KL term; we use ``scale_rewards="none"`` so ``β`` trades reward units against nats. Its logged
  ``kl`` is the k3 estimate (always ≥ 0).
- Dropout is off (``disable_dropout=True``, both algorithms): with dropout, policy and reference disagree
  even at step 0 and the logged KL is noise.

Reference model: TRL 1.16 has no ``ref_model`` argument; GRPOTrainer/RLOOTrainer build the reference by
reloading ``model.config._name_or_path`` (with ``model_init_kwargs``). To use a different reference we load
the policy ourselves and point ``_name_or_path`` at the reference while the trainer is built, then restore it,
and check that the reference the trainer holds came from that path.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from mpo.infra.distributed import is_main
from mpo.models.policies import Decoding, HFPolicy, load_tokenizer
from mpo.training.common import save_model, train_from_checkpoint, trl_kwargs

Scorer = Callable[[list[str], list[str]], list[float]]

# Stage defaults on top of `trl_kwargs`'s CPU-safe ones; why: see the module docstring.
_GRPO_DEFAULTS: dict[str, Any] = {"scale_rewards": "none", "disable_dropout": True, "logging_steps": 1}
_RLOO_DEFAULTS: dict[str, Any] = {"normalize_advantages": False, "disable_dropout": True, "logging_steps": 1}

log = logging.getLogger(__name__)


def scorer_name(scorer: Scorer, index: int) -> str:
    """A readable name for TRL's per-reward logs (``rewards/<name>/mean``)."""
    name = getattr(scorer, "__name__", None) or getattr(scorer, "name", None) or type(scorer).__name__
    return f"{name}" if index < 0 else f"{name}_{index}"


def as_reward_func(scorer: Scorer, name: str) -> Callable[..., list[float]]:
    """Wrap a scorer ``score(prompts, responses)`` into TRL's ``(prompts, completions, **kwargs)`` form."""

    def reward_func(prompts, completions, **kwargs) -> list[float]:
        return [float(v) for v in scorer(_as_text(prompts), _as_text(completions))]

    reward_func.__name__ = name
    return reward_func


def _as_text(items: Sequence[Any]) -> list[str]:
    """Conversational samples arrive as message lists; scorers take the text of the last message."""
    return [item if isinstance(item, str) else item[-1]["content"] for item in items]


def _reward_funcs(scorers: Sequence[Scorer]) -> list[Callable[..., list[float]]]:
    if not scorers:
        raise ValueError("train_rl needs at least one reward function (a scorer callable)")
    names = [scorer_name(s, -1) for s in scorers]
    if len(set(names)) < len(names):  # TRL keys its logs by name: keep them distinct
        names = [scorer_name(s, i) for i, s in enumerate(scorers)]
    return [as_reward_func(s, n) for s, n in zip(scorers, names)]


def _build_config(algorithm: str, beta: float, reward_weights, trl_args: Mapping, out_dir: Path, seed: int):
    if beta < 0 or not math.isfinite(beta):
        raise ValueError(f"beta must be a finite number >= 0 (the KL coefficient), got {beta}")
    if algorithm == "grpo":
        from trl import GRPOConfig as Config
        defaults = _GRPO_DEFAULTS
    elif algorithm == "rloo":
        from trl import RLOOConfig as Config
        defaults = _RLOO_DEFAULTS
    else:
        raise ValueError(f"algorithm must be 'grpo' or 'rloo', got {algorithm!r}")
    kwargs = trl_kwargs({**defaults, **dict(trl_args)}, out_dir, seed)
    kwargs["beta"] = beta
    if reward_weights is not None:
        kwargs["reward_weights"] = [float(w) for w in reward_weights]
    return Config(**kwargs)


def _same_path(a, b) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _lora_model(policy_path, lora, model_init_kwargs):
    """(model, peft_config) for a LoRA RL stage: a fresh adapter on ``policy_path``, its base the KL reference;
    or, when ``policy_path`` is itself an adapter (Mixed-PO's DPO policy), that adapter trained on, a frozen
    copy of it (TRL's "ref" adapter) the KL reference."""
    from mpo.models.adapters import adapter_base, is_adapter, peft_config

    if not is_adapter(policy_path):
        return str(policy_path), peft_config(lora, policy_path)
    from peft import PeftModel
    from trl.trainer.utils import create_model_from_path

    base = create_model_from_path(adapter_base(policy_path), **dict(model_init_kwargs or {}))
    return PeftModel.from_pretrained(base, str(policy_path), is_trainable=True), None


def _build_trainer(policy_path, ref_model_path, reward_funcs, dataset, config, callbacks, algorithm, lora=None):
    from trl import GRPOTrainer, RLOOTrainer
    from trl.trainer.utils import create_model_from_path

    Trainer = GRPOTrainer if algorithm == "grpo" else RLOOTrainer
    tokenizer = load_tokenizer(policy_path)
    separate_ref = ref_model_path is not None and not _same_path(ref_model_path, policy_path)
    if lora is not None:
        if separate_ref:
            raise ValueError("a LoRA RL policy's KL reference is its own starting point: pass no ref_model_path")
        model, peft = _lora_model(policy_path, lora, config.model_init_kwargs)
        return Trainer(model=model, reward_funcs=reward_funcs, args=config, train_dataset=dataset,
                       processing_class=tokenizer, callbacks=list(callbacks), peft_config=peft)
    if not separate_ref:
        return Trainer(model=str(policy_path), reward_funcs=reward_funcs, args=config, train_dataset=dataset,
                       processing_class=tokenizer, callbacks=list(callbacks))
    model = create_model_from_path(str(policy_path), **dict(config.model_init_kwargs or {}))
    _check_same_vocabulary(model, ref_model_path)
    model.config._name_or_path = str(ref_model_path)  # TRL builds its reference from this path
    # `model_init_kwargs` stay set (TRL warns that the instance ignores them): TRL loads the reference with them.
    try:
        trainer = Trainer(model=model, reward_funcs=reward_funcs, args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=list(callbacks))
    finally:
        model.config._name_or_path = str(policy_path)
    ref = getattr(trainer, "ref_model", None)
    ref = getattr(ref, "module", ref)  # unwrap a DeepSpeed/DDP wrapper
    if config.beta > 0 and (ref is None or not _same_path(ref.config._name_or_path, ref_model_path)):
        raise RuntimeError(f"{Trainer.__name__} did not build its KL reference from {ref_model_path}; "
                           "TRL's reference-model construction changed, update mpo.training.rl")
    return trainer


def _check_same_vocabulary(model, ref_model_path) -> None:
    from transformers import AutoConfig

    ref_vocab = AutoConfig.from_pretrained(str(ref_model_path)).vocab_size
    if ref_vocab != model.config.vocab_size:
        raise ValueError(f"reference model {ref_model_path} has vocab_size {ref_vocab} but the policy has "
                         f"{model.config.vocab_size}; the KL needs both over one vocabulary")


def _keep_trained_adapter(out_dir: Path, policy_path) -> None:
    """The trained adapter alone, pointing at its base (PEFT also saves TRL's frozen "ref" copy, in ref/)."""
    import shutil

    from mpo.models.adapters import adapter_base, is_adapter, point_at_base

    shutil.rmtree(out_dir / "ref", ignore_errors=True)
    point_at_base(out_dir, adapter_base(policy_path) if is_adapter(policy_path) else policy_path)


def _log_series(log_history: list[dict], key: str) -> list[float]:
    return [float(entry[key]) for entry in log_history if key in entry]


def _training_metrics(log_history: list[dict], steps: int) -> dict[str, float]:
    """Reward at the first vs the last logged step, and the KL to the reference (TRL logs it when β > 0)."""
    rewards, kls = _log_series(log_history, "reward"), _log_series(log_history, "kl")
    metrics = {"steps": float(steps)}
    if rewards:
        metrics.update(reward_start=rewards[0], reward_end=rewards[-1])
    if kls:
        if not all(math.isfinite(k) for k in kls):
            raise FloatingPointError(f"KL to the reference became non-finite during RL ({kls}); lower the "
                                     "learning rate or raise beta")
        metrics.update(kl_final=kls[-1], kl_max=max(kls))
    return metrics


def mean_reward(policy_path, prompts: Sequence[str], scorers: Sequence[Scorer], weights, decoding: Decoding) -> float:
    """Mean weighted reward of one seeded sample per prompt from the policy saved at ``policy_path``."""
    policy = HFPolicy.from_pretrained(policy_path)
    if torch.cuda.is_available():
        policy.model.cuda()
    responses = policy.generate(list(prompts), decoding)
    weights = [1.0] * len(scorers) if weights is None else list(weights)
    per_scorer = [scorer(list(prompts), responses) for scorer in scorers]
    totals = [sum(w * float(r[i]) for w, r in zip(weights, per_scorer)) for i in range(len(responses))]
    return sum(totals) / len(totals)


def last_completions(trainer, limit: int = 16) -> list[dict[str, Any]]:
    """The last training step's sampled completions with each reward function's value and the advantage, for the
    run's W&B table (TRL keeps them in ``trainer._logs`` for its own ``log_completions``; tests/test_rl.py fails
    if a TRL release moves them). Empty, with a warning, if this TRL has none."""
    logs = getattr(trainer, "_logs", None)
    if not logs or not logs.get("completion"):
        log.warning("%s kept no completions to show (trainer._logs): the W&B completions table is skipped",
                    type(trainer).__name__)
        return []
    rows = []
    for i, (prompt, completion) in enumerate(zip(logs["prompt"], logs["completion"])):
        row = {"prompt": _as_text([prompt])[0], "completion": _as_text([completion])[0]}
        row.update({f"reward/{name}": float(values[i]) for name, values in logs["rewards"].items()})
        row["advantage"] = float(logs["advantages"][i])
        rows.append(row)
    return rows[-limit:]


def train_rl(
    policy_path: str | Path,
    prompts: list[str],
    reward_funcs: Sequence[Scorer],
    out_dir: str | Path,
    *,
    beta: float,
    algorithm: str = "rloo",
    reward_weights: Sequence[float] | None = None,
    trl_args: Mapping[str, Any] = {},
    ref_model_path: str | Path | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    seed: int = 0,
    eval_prompts: Sequence[str] = (),
    lora: Any = None,
) -> dict[str, float]:
    """RL from ``policy_path`` on ``prompts`` maximising ``Σ_k reward_weights[k]·reward_funcs[k]`` − β·KL.

    ``reward_funcs`` are scorers ``score(prompts, responses) -> list[float]``; ``ref_model_path`` (default:
    the initial policy) is the KL reference. Saves model + tokenizer to ``out_dir``; with ``lora``
    (`mpo.config.schema.LoRAConfig`) the policy is a LoRA adapter on ``policy_path`` (see `_lora_model`). With
    ``eval_prompts``, also samples one response per prompt from the initial and the trained policy (same seed
    and length as training) and reports their mean reward (``eval_reward_initial`` / ``eval_reward_final``).
    """
    from datasets import Dataset

    from mpo.config.budget import trained_sequences

    out_dir = Path(out_dir)
    config = _build_config(algorithm, beta, reward_weights, trl_args, out_dir, seed)
    funcs = _reward_funcs(reward_funcs)
    if reward_weights is not None and len(reward_weights) != len(funcs):
        raise ValueError(f"reward_weights has {len(reward_weights)} entries for {len(funcs)} reward functions")
    trainer = _build_trainer(policy_path, ref_model_path, funcs, Dataset.from_dict({"prompt": list(prompts)}),
                             config, callbacks, algorithm, lora)
    start = time.perf_counter()
    train_from_checkpoint(trainer)
    seconds = time.perf_counter() - start
    save_model(trainer, out_dir)
    if lora is not None and is_main():  # rank 0 saved the adapter
        _keep_trained_adapter(out_dir, policy_path)
    trainer.processing_class.save_pretrained(str(out_dir))
    metrics = _training_metrics(trainer.state.log_history, trainer.state.global_step)
    metrics["train_seconds"] = seconds
    metrics["trained_sequences"] = trained_sequences(trainer, "rl")
    metrics["completions"] = last_completions(trainer)
    if eval_prompts and is_main():  # rank 0 saved the policy
        decoding = Decoding(max_new_tokens=config.max_completion_length, temperature=config.temperature, seed=seed)
        metrics["eval_reward_initial"] = mean_reward(policy_path, eval_prompts, reward_funcs, reward_weights, decoding)
        metrics["eval_reward_final"] = mean_reward(out_dir, eval_prompts, reward_funcs, reward_weights, decoding)
    return metrics
