"""LoRA policies (``policy.lora``, README "LoRA policies"): a trained policy saved as a PEFT adapter on the
reference, and K such adapters run as the components of one log-linear mixture on ONE base model in memory.

- `peft_config`: the PEFT ``LoraConfig`` a DPO or RL stage trains, once ``target_modules`` are checked
  against the model (a one-line `ConfigError` names the ones that match nothing and the layers there are).
- `is_adapter` / `adapter_base`: an adapter directory (``adapter_config.json``) and the base it points at.
- `load_merged`: an adapter's policy as a plain causal LM, ``W + (α/r)·B·A`` merged into the base weights.
- `AdapterStack`: the base loaded once, K adapters attached by name; ``.components`` are K component models
  that `mpo.models.mixing.LogLinearMixture` takes like K separate models.
- `component_logits` / `new_caches`: every component's logits for one input. Components of one stack run as
  ONE forward over K·B rows with PEFT's mixed-adapter batch (``adapter_names=``): rows ``k·B .. (k+1)·B`` go
  through adapter k only, and the stack's one KV cache holds those rows' keys and values, each block computed
  under its own adapter. Against switching the active adapter (``set_adapter``) before each component's own
  forward, the batched forward decoded 1.4x (K = 2) and 1.6x (K = 3) faster on CPU (`mpo.studies.lora_bench`, ~23 M
  parameters): one pass over the shared base weights per token instead of K, and no walk over every LoRA
  layer per switch. Its activations are K·B rows at once (the KV caches are the same as K models').
- `interpolate_adapters`: Reward Soups over adapters, exactly (see its docstring).

Pure torch + transformers + peft: no Hydra, TRL or W&B here.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, DynamicCache, PreTrainedModel

from mpo.infra.errors import ConfigError

ADAPTER_CONFIG = "adapter_config.json"


# ------------------------------------------------------------------------------------------------ training


def linear_layer_names(model: torch.nn.Module) -> set[str]:
    """Last name components of the layers LoRA can adapt (``nn.Linear`` and GPT-2's ``Conv1D``)."""
    from transformers.pytorch_utils import Conv1D

    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if isinstance(module, (torch.nn.Linear, Conv1D))}


def check_targets(target_modules: Sequence[str], model_path: str | Path) -> None:
    """A `ConfigError` naming the target modules that match no layer of the model at ``model_path``."""
    with torch.device("meta"):  # the architecture only: no weights are read or allocated
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(model_path)))
    layers = linear_layer_names(model)
    missing = [name for name in target_modules if name not in layers]
    if missing:
        raise ConfigError(f"policy.lora.target_modules: {missing} name no linear layer of {model_path} "
                          f"({type(model).__name__}); its layers are {sorted(layers)}")


def peft_config(lora: Any, model_path: str | Path, task_type: str = "CAUSAL_LM"):
    """The PEFT ``LoraConfig`` of ``policy.lora`` (`mpo.config.schema.LoRAConfig`), checked against the model."""
    from peft import LoraConfig

    check_targets(lora.target_modules, model_path)
    return LoraConfig(r=int(lora.r), lora_alpha=float(lora.alpha), lora_dropout=float(lora.dropout),
                      target_modules=list(lora.target_modules), task_type=task_type)


def point_at_base(adapter_dir: str | Path, base: str | Path) -> None:
    """Record ``base`` (made absolute when it is a local directory) as the saved adapter's base model."""
    path = Path(adapter_dir) / ADAPTER_CONFIG
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = str(Path(base).resolve()) if Path(base).is_dir() else str(base)
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


# ------------------------------------------------------------------------------------------------ loading


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> str:
    """The base model (hub name or directory) an adapter directory was trained on."""
    return json.loads((Path(path) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]


def _base_model(path: str | Path, dtype: str) -> PreTrainedModel:
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype))


def load_merged(path: str | Path, dtype: str = "float32") -> PreTrainedModel:
    """The policy an adapter directory holds, as a plain causal LM with its ΔW merged into the base weights."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(_base_model(adapter_base(path), dtype), str(path))
    return model.merge_and_unload().eval()


class AdapterStack:
    """One base model in memory with K LoRA adapters attached by name (``component_0``, ...)."""

    def __init__(self, paths: Sequence[str | Path], dtype: str = "float32"):
        from peft import PeftModel

        bases = sorted({adapter_base(p) for p in paths})
        if len(bases) != 1:
            raise ValueError(f"adapters of one stack must share one base model; these point at {bases}")
        self.names = [f"component_{k}" for k in range(len(paths))]
        model = PeftModel.from_pretrained(_base_model(bases[0], dtype), str(paths[0]), adapter_name=self.names[0])
        for name, path in zip(self.names[1:], paths[1:]):
            model.load_adapter(str(path), adapter_name=name)
        self.model = model.eval()
        self.components = [AdapterComponent(self, name) for name in self.names]

    def to(self, device) -> "AdapterStack":
        self.model.to(device)
        return self


class AdapterComponent:
    """One adapter of an `AdapterStack` as a causal LM: a call runs the shared base under this adapter only."""

    def __init__(self, stack: AdapterStack, name: str):
        self.stack, self.name = stack, name

    @property
    def config(self):
        return self.stack.model.config

    @property
    def device(self) -> torch.device:
        return self.stack.model.device

    def eval(self) -> "AdapterComponent":
        return self

    def __call__(self, input_ids: torch.Tensor, **kwargs):
        return self.stack.model(input_ids=input_ids, adapter_names=[self.name] * len(input_ids), **kwargs)


# ----------------------------------------------------------------------------------------------- forwards


def _groups(models: Sequence[Any]) -> list[list[int]]:
    """Indices of ``models``: the components of one `AdapterStack` together, every other model alone."""
    groups: dict[int, list[int]] = {}
    for k, model in enumerate(models):
        key = id(model.stack) if isinstance(model, AdapterComponent) else id(model)
        groups.setdefault(key, []).append(k)
    return list(groups.values())


def new_caches(models: Sequence[Any]) -> list[DynamicCache]:
    """One KV cache per model, the components of one stack sharing theirs (one row block per component)."""
    caches: list[DynamicCache | None] = [None] * len(models)
    for group in _groups(models):
        cache = DynamicCache(config=models[group[0]].config)
        for k in group:
            caches[k] = cache
    return caches


def cache_keyword(model: Any) -> str:
    """The forward argument that takes a KV cache: ``cache`` in current transformers, ``past_key_values`` in the
    releases before it (which transformers 5.40 removes); read from the model's own signature, not a version."""
    base = model.stack.model.get_base_model() if isinstance(model, AdapterComponent) else model
    return _cache_keyword(type(base))


@functools.cache
def _cache_keyword(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def component_logits(models: Sequence[Any], caches: Sequence[DynamicCache] | None, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor, position_ids: torch.Tensor, logits_to_keep: int = 1
                     ) -> list[torch.Tensor]:
    """Every model's logits [B, logits_to_keep, V] for one input, each on its model's device; the components
    of one stack in one batched forward (caches from `new_caches`, or None for a forward without cache)."""
    out: list[torch.Tensor | None] = [None] * len(models)
    batch = input_ids.shape[0]
    for group in _groups(models):
        first = models[group[0]]
        device, copies = first.device, len(group)
        kwargs = dict(input_ids=input_ids.to(device).repeat(copies, 1),
                      attention_mask=attention_mask.to(device).repeat(copies, 1),
                      position_ids=position_ids.to(device).repeat(copies, 1), logits_to_keep=logits_to_keep)
        if caches is not None:
            kwargs.update({cache_keyword(first): caches[group[0]], "use_cache": True})
        if isinstance(first, AdapterComponent):
            names = [models[k].name for k in group for _ in range(batch)]
            logits = first.stack.model(adapter_names=names, **kwargs).logits
        else:
            logits = first(**kwargs).logits
        for k, block in zip(group, logits.split(batch)):
            out[k] = block
    return out


# ----------------------------------------------------------------------------------------------- soups


def interpolate_adapters(paths: Sequence[str | Path], weights: Sequence[float], out_dir: str | Path,
                         dtype: str = "float32") -> dict[str, float]:
    """Reward Soups over LoRA adapters of one base: save the adapter whose update is ``Σ_k λ_k ΔW_k``.

    ``θ_base + Σ_k λ_k ΔW_k = Σ_k λ_k (θ_base + ΔW_k)`` (the weights sum to 1), so this is exactly the
    interpolation of the merged models' parameters, the soup of full fine-tunes. PEFT's ``add_weighted_adapter``
    with ``combination_type="cat"`` builds it: A stacks the rows ``λ_k·(α_k/r_k)·A_k``, B the columns ``B_k``,
    so ``B·A = Σ_k λ_k (α_k/r_k) B_k A_k`` at rank Σ_k r_k (scale 1). Its ``"linear"`` combination averages A
    and B separately, ``(Σ λ_k B_k)(Σ λ_k A_k)``, which is NOT the interpolation of ΔW (it adds cross terms
    B_j A_k); it is not used. Zero-weight adapters are left out (they add rank, not update).
    """
    from peft import PeftModel

    keep = [(Path(p), float(w)) for p, w in zip(paths, weights) if w > 0]
    if not keep:
        raise ValueError("interpolate_adapters needs at least one adapter with positive weight")
    stack = AdapterStack([p for p, _ in keep], dtype)
    for name in stack.names:
        if getattr(stack.model.peft_config[name], "use_rslora", False):
            raise ValueError(f"{name}: rank-stabilised LoRA scales by α/√r, which the 'cat' soup does not keep")
    model: PeftModel = stack.model
    model.add_weighted_adapter(stack.names, [w for _, w in keep], adapter_name="default", combination_type="cat")
    model.set_adapter("default")
    for name in stack.names:
        model.delete_adapter(name)
    model.save_pretrained(str(out_dir))  # the "default" adapter, at the top of out_dir
    AutoTokenizer.from_pretrained(str(keep[0][0])).save_pretrained(str(out_dir))
    return {"num_models": float(len(keep)), "rank": float(model.peft_config["default"].r)}
