"""Rewarded soups (Ramé et al. 2023): one policy by interpolating the single-objective policies' weights.

``θ = Σ_k λ_k θ_k`` over every floating-point parameter and buffer of K models fine-tuned from one
initialisation (here: the DPO policies ``π_k``, all from ``π_ref``). Non-float tensors (integer or boolean
buffers) must agree across models and are copied. Models are read one at a time, so memory is two models
plus the running sum whatever K is.

LoRA singles (``policy.lora``): the soup is the adapter with update ``Σ_k λ_k ΔW_k`` on their shared base,
exactly the interpolation of the merged models (`mpo.models.adapters.interpolate_adapters`: PEFT's rank-concatenating
``"cat"`` combination; its ``"linear"`` one, which averages A and B separately, is not the interpolation of
ΔW = B·A and is not used).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from mpo.core.simplex import check_simplex
from mpo.models.adapters import is_adapter, load_merged
from mpo.models.policies import load_tokenizer


def _load(path: str | Path) -> PreTrainedModel:
    if is_adapter(path):  # a LoRA adapter among full models: its policy, merged into its base
        return load_merged(path)
    return AutoModelForCausalLM.from_pretrained(str(path), dtype="auto").eval()


def _check_tokenizers(model_paths: Sequence[str | Path]) -> None:
    first = load_tokenizer(model_paths[0])
    for path in model_paths[1:]:
        other = load_tokenizer(path)
        if other.get_vocab() != first.get_vocab() or other.all_special_tokens != first.all_special_tokens:
            raise ValueError(f"tokenizer of {path} differs from that of {model_paths[0]}; a soup needs models "
                             "fine-tuned from one base model with one tokenizer")


def _check_architecture(first: PreTrainedModel, other: PreTrainedModel, path) -> None:
    if type(first) is not type(other):
        raise ValueError(f"{path} is a {type(other).__name__}, the first model a {type(first).__name__}; "
                         "interpolate only models of one architecture")
    a, b = first.state_dict(), other.state_dict()
    if a.keys() != b.keys():
        extra = sorted(set(a) ^ set(b))[:5]
        raise ValueError(f"{path} has different parameters from the first model (e.g. {extra}); "
                         "interpolate only models of one architecture")
    for name, tensor in a.items():
        if tensor.shape != b[name].shape:
            raise ValueError(f"parameter {name!r} has shape {tuple(b[name].shape)} in {path} but "
                             f"{tuple(tensor.shape)} in the first model; the models must share one architecture")


def _accumulate(total: dict[str, torch.Tensor], model: PreTrainedModel, weight: float, path) -> None:
    """``total += weight·θ`` for float tensors (in float32 or wider); other tensors must be equal."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            total[name] += weight * tensor.to(total[name].dtype)
        elif not torch.equal(total[name], tensor):
            raise ValueError(f"non-float tensor {name!r} differs in {path}; it cannot be interpolated")


def interpolate(model_paths: Sequence[str | Path], weights: Sequence[float], out_dir: str | Path) -> dict[str, float]:
    """Save ``Σ_k weights[k]·θ_k`` (model + the first model's tokenizer) to ``out_dir``.

    Returns ``{"num_models", "num_tensors", "seconds"}``. Raises ValueError on weights off the simplex,
    tokenizer or architecture mismatch.
    """
    start = time.perf_counter()
    if not model_paths:
        raise ValueError("interpolate needs at least one model path")
    weights = check_simplex(weights, len(model_paths))
    _check_tokenizers(model_paths)
    soup = _load(model_paths[0])
    accumulate_dtype = lambda t: torch.promote_types(t.dtype, torch.float32)  # noqa: E731
    total = {name: (t.to(accumulate_dtype(t)) * weights[0] if t.is_floating_point() else t.clone())
             for name, t in soup.state_dict().items()}
    for path, weight in zip(model_paths[1:], weights[1:]):
        other = _load(path)
        _check_architecture(soup, other, path)
        _accumulate(total, other, weight, path)
        del other
    own = soup.state_dict()
    soup.load_state_dict({name: t.to(own[name].dtype) for name, t in total.items()})
    soup.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(str(model_paths[0])).save_pretrained(str(out_dir))  # as saved, unchanged
    num_float = sum(1 for t in own.values() if t.is_floating_point())
    return {"num_models": float(len(model_paths)), "num_tensors": float(num_float),
            "seconds": time.perf_counter() - start}


def build(ctx, method):
    """Reward Soups (Ramé et al. 2023): the single-objective policies' parameters averaged with λ."""
    from mpo.stages.context import MethodOutput, load_policy, weights_label
    from mpo.stages.rl import uniform_or
    from mpo.stages.singles import single_policy

    weights, info = uniform_or(method.weights, len(ctx.objectives)), {}
    if method.weights_from == "mpo":
        weights, info = mpo_weights(ctx, method.singles)
    singles = [single_policy(ctx, k, by=method.singles) for k in ctx.objectives]
    soup = ctx.build("soup", "reward_soup", {"weights": weights}, lambda out: soup_of(singles, weights, out), singles)
    label = "reward_soups" if method.weights is None else weights_label("reward_soups", weights)
    if method.weights_from is not None:
        label += f"[λ={method.weights_from}]"
    if method.singles != "dpo":
        label += f"[{method.singles}-singles]"
    return MethodOutput(load_policy(ctx, soup), label=label, weights=dict(zip(ctx.objectives, weights)),
                        weights_source=method.weights_from or "preset", info=info)


def soup_of(singles, weights: list[float], out: Path) -> dict[str, float]:
    """The soup of the single policies' artifacts: of their LoRA adapters when all are adapters, else of the
    full models (an adapter merged into its base first, like any other single)."""
    from mpo.models.adapters import interpolate_adapters, is_adapter

    paths = [s.path for s in singles]
    if all(map(is_adapter, paths)):
        return interpolate_adapters(paths, weights, out)
    return interpolate(paths, weights, out)


def mpo_weights(ctx, singles: str) -> tuple[list[float], dict]:
    """MPO's max-min λ̂ (its default estimator and solver; the same cached stages an MPO run uses)."""
    from mpo.config.schema import MPOMethod
    from mpo.stages.estimation import max_min_weights

    weights, info = max_min_weights(ctx, MPOMethod(singles=singles), ctx.objectives)
    return [float(w) for w in weights], {"mpo_weights": info}
