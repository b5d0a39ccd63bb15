"""Checks of a composed config that the typed schemas alone cannot make, all before any model library loads:

- no unknown keys anywhere: Hydra's ``+key=value`` adds a key even to a typed node, and OmegaConf then keeps
  it on the dataclass where nothing reads it, so a typo (``+method.wieghts``) was silently ignored;
- every ``_target_`` exists and is given only keywords it accepts; every ``trainer.<stage>`` key is a field of
  that stage's TRL config (read from source by `mpo.config.signatures`, so no TRL import);
- counts (``n_prompts``, ``batch_size``, ``steps``, ...) are >= 1;
- local data files and model directories named by the config exist and look usable.

Each failure is a `ConfigError` / `DataError` whose one-line message names the key and the fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from mpo.config.signatures import Params, callable_params, class_params, defines, module_missing
from mpo.data.local import check_data_source, check_model_dir
from mpo.infra.errors import ConfigError, did_you_mean

# keys of an instantiable node that Hydra reads itself
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_recursive_", "_convert_", "_args_"})
# trainer.<stage> -> the TRL config classes its keywords go to (rl: the one the method's rl.algorithm picks)
TRAINER_CONFIGS = {
    "sft": {"sft": ("trl.trainer.sft_config", "SFTConfig")},
    "dpo": {"dpo": ("trl.trainer.dpo_config", "DPOConfig")},
    "reward_model": {"reward_model": ("trl.trainer.reward_config", "RewardConfig")},
    "rl": {"grpo": ("trl.trainer.grpo_config", "GRPOConfig"), "rloo": ("trl.trainer.rloo_config", "RLOOConfig")},
}
# fields (wherever they appear in the schemas) that count something and must be >= 1
COUNTS = frozenset({"n_prompts", "samples_per_prompt", "max_new_tokens", "batch_size", "bootstrap", "n_pair_prompts",
                    "steps", "num_candidates", "n_groups", "em_iterations", "pairs_per_user", "normalization_samples",
                    "scoring_batch_size", "vocab_size", "responses_per_prompt"})
# keys of `_target_` nodes that name a local input when they hold a path
DATA_KEYS, MODEL_KEYS = frozenset({"source", "data_files"}), frozenset({"pretrained", "model"})


def check_config(config: Any) -> None:
    """All the checks above, on the typed config `OmegaConf.to_object` returned."""
    for path, node in _nodes(config):
        if dataclasses.is_dataclass(node):
            _check_known_fields(path, node)
        elif isinstance(node, Mapping) and "_target_" in node:
            _check_target(path, node)
    _check_trainer(config)
    _check_counts(config)
    _check_local_inputs(config)
    _check_defensive(config)


def _nodes(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every dataclass and mapping in the config tree, with its dotted key."""
    if dataclasses.is_dataclass(node):
        yield path, node
        children = vars(node).items()
    elif isinstance(node, Mapping):
        yield path, node
        children = node.items()
    else:
        return
    for key, value in children:
        yield from _nodes(value, f"{path}.{key}" if path else str(key))


def _check_known_fields(path: str, node: Any) -> None:
    fields = [f.name for f in dataclasses.fields(node)]
    for key in vars(node):
        if key not in fields:
            where = f"{path}.{key}" if path else key
            raise ConfigError(f"{where}: unknown key{did_you_mean(key, fields)}; {type(node).__name__} has no such "
                              "setting (a `+` prefix cannot add one): fix the name or drop it")


def _check_target(path: str, node: Mapping) -> None:
    target = str(node["_target_"])
    if module_missing(target):
        raise ConfigError(f"{path}._target_={target}: no module {target.rpartition('.')[0]} can be imported; fix "
                          "the name, or install the package that provides it")
    if defines(target) is False:
        module, _, name = target.rpartition(".")
        raise ConfigError(f"{path}._target_={target}: module {module} defines no {name!r}; fix the name")
    params = callable_params(target)
    if params is None or params.open:
        return
    for key in node:
        if key not in HYDRA_KEYS and key not in params.names:
            raise ConfigError(f"{path}.{key}: {target} takes no argument {key!r}"
                              f"{did_you_mean(str(key), params.names)}; fix the name or drop it")


def trainer_params(stage: str, config: Any = None) -> tuple[str, Params] | None:
    """(class names, accepted keywords) of the TRL config(s) ``trainer.<stage>`` feeds; None if unreadable."""
    classes = TRAINER_CONFIGS[stage]
    if stage == "rl":
        algorithm = getattr(getattr(getattr(config, "method", None), "rl", None), "algorithm", None)
        classes = {algorithm: classes[algorithm]} if algorithm in classes else classes
    names: set[str] = set()
    for module, cls in classes.values():
        params = class_params(module, cls)
        if params is None:
            return None  # TRL's source could not be read: TRL itself reports a bad keyword when the stage starts
        names |= params.names
    return " or ".join(cls for _, cls in classes.values()), Params(frozenset(names))


def _check_trainer(config: Any) -> None:
    for stage in TRAINER_CONFIGS:
        kwargs = getattr(config.trainer, stage, None) or {}
        known = trainer_params(stage, config) if kwargs else None
        if known is None:
            continue
        cls, params = known
        for key in kwargs:
            if key not in params.names:
                raise ConfigError(f"trainer.{stage}.{key}: not a setting of TRL's {cls}"
                                  f"{did_you_mean(str(key), params.names)}; fix the name or drop it")


def _check_counts(config: Any) -> None:
    for path, node in _nodes(config):
        if not dataclasses.is_dataclass(node):
            continue
        for field in dataclasses.fields(node):
            value = getattr(node, field.name)
            if field.name in COUNTS and isinstance(value, int) and not isinstance(value, bool) and value < 1:
                where = f"{path}.{field.name}" if path else field.name
                raise ConfigError(f"{where}={value}: must be at least 1 (it is a count)")


def _check_defensive(config: Any) -> None:
    """Defensive resampling weighs candidates by the policies' own laws: the evaluation must sample those."""
    share = getattr(getattr(config, "method", None), "defensive_share", None)
    if share is not None and (config.eval.temperature != 1.0 or config.eval.top_p < 1.0):
        raise ConfigError(f"method.defensive_share={share} resamples the policies' own laws, but eval.temperature="
                          f"{config.eval.temperature} eval.top_p={config.eval.top_p}: set both to 1 or drop the share")


def _check_local_inputs(config: Any) -> None:
    if config.policy.pretrained is not None:
        check_model_dir(str(config.policy.pretrained), "policy.pretrained")
    for path, node in _nodes(config.task, "task"):
        if not isinstance(node, Mapping) or "_target_" not in node:
            continue
        for key, value in node.items():
            if isinstance(value, str) and key in DATA_KEYS:
                check_data_source(value, f"{path}.{key}")
            elif isinstance(value, str) and key in MODEL_KEYS:
                check_model_dir(value, f"{path}.{key}")
