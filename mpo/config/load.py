"""`load_config`: a composed config resolved into the typed schemas (`mpo.config.schema`), checked
(`mpo.config.checks`, then the checks that span groups) and completed (the budget's batch sizes and steps,
``policy.dtype`` in every trainer) before any model library is imported."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from mpo.config.schema import Config, MethodConfig, MPOMethod, SingleMethod, TrainerConfig, check_simplex
from mpo.infra.errors import ConfigError, one_line


def validate(cfg: Config) -> Config:
    """Checks that span groups (a method's weights against the task's objectives)."""
    objectives = list(cfg.task.objectives)
    method = cfg.method
    if not isinstance(method, MethodConfig):
        raise ConfigError(f"method {getattr(method, 'name', method)!r} has no schema: its YAML must list a `_<name>` default")
    if getattr(method, "weights", None) is not None:
        check_simplex(list(method.weights), "method.weights", len(objectives))
    if isinstance(method, SingleMethod) and method.objective.isdigit():
        index = int(method.objective)
        if index >= len(objectives):
            raise ConfigError(f"method.objective={index} but task {cfg.task.name!r} has {len(objectives)} objectives")
        method.objective = objectives[index]
    for key in ("objective", "drop"):
        value = getattr(method, key, None)
        if value is not None and value not in objectives:
            raise ConfigError(f"method.{key}={value!r} is not an objective of task {cfg.task.name!r}: choose one of {objectives}")
    drop, weights = getattr(method, "drop", None), getattr(method, "weights", None)
    if drop is not None and weights is not None and weights[objectives.index(drop)] >= 1.0:
        raise ConfigError(f"method.weights={list(weights)} puts all the weight on method.drop={drop!r}, so nothing "
                          "is left to mix: give the other objectives weight, or drop another objective")
    check_estimator(method, len(objectives) - (drop is not None))
    apply_budget(cfg.trainer)
    apply_dtype(cfg.trainer, cfg.policy.dtype)
    return cfg


def check_estimator(method: MethodConfig, n_policies: int) -> None:
    """MPO's mixture proposal draws at least one sample per prompt from π_ref and from each π_k it mixes, so its
    first round needs K + 1 of them (refused here, not after the singles are trained)."""
    if not isinstance(method, MPOMethod) or method.weights is not None:  # preset weights: nothing is estimated
        return
    estimator = method.estimator
    needed = n_policies + 1 + estimator.round2_samples
    if estimator.proposal == "mixture" and estimator.samples_per_prompt < needed:
        round2 = f" + round2_samples={estimator.round2_samples}" if estimator.round2_samples else ""
        raise ConfigError(f"method.estimator.samples_per_prompt={estimator.samples_per_prompt}: the mixture proposal "
                          f"draws at least one sample per prompt from π_ref and from each of the {n_policies} policies "
                          f"it mixes, so it needs at least {needed} (K + 1 = {n_policies + 1}{round2}); set "
                          f"method.estimator.samples_per_prompt={needed} or more, or method.estimator.proposal=reference")


TRAINED_STAGES = ("sft", "dpo", "reward_model", "rl")


def apply_dtype(trainer: TrainerConfig, dtype: str) -> None:
    """Every trained stage loads its weights in ``policy.dtype`` (TRL's ``model_init_kwargs``), so a bf16 policy
    trains in bf16 instead of a float32 copy twice its size. float32, the default, adds nothing (and leaves the
    artifact keys of float32 runs as they were)."""
    if dtype == "float32":
        return
    for stage in TRAINED_STAGES:
        kwargs = getattr(trainer, stage)
        init = dict(kwargs.get("model_init_kwargs") or {})
        if init.get("dtype", dtype) != dtype:
            raise ConfigError(f"trainer.{stage}.model_init_kwargs.dtype={init['dtype']} disagrees with policy.dtype="
                              f"{dtype}: set the dtype in policy.dtype only")
        setattr(trainer, stage, {**kwargs, "model_init_kwargs": {**init, "dtype": dtype}})


def apply_budget(trainer: TrainerConfig) -> None:
    """Set max_steps and the batch of every budgeted stage from ``trainer.budget`` (mpo.config.budget)."""
    from mpo.config.budget import SEQUENCES_PER_EXAMPLE, budgeted, global_batch
    from mpo.infra.distributed import world_size

    processes = world_size()
    trainer.sft = global_batch("sft", trainer.sft, processes)
    budget = trainer.budget
    if budget.steps is None:  # each stage's own batch, kept global across processes
        for stage in SEQUENCES_PER_EXAMPLE:
            setattr(trainer, stage, global_batch(stage, getattr(trainer, stage), processes))
        return
    for stage in SEQUENCES_PER_EXAMPLE:
        setattr(trainer, stage, budgeted(stage, getattr(trainer, stage), budget.steps, budget.sequences_per_step,
                                         processes))


def load_config(cfg: DictConfig) -> Config:
    """Resolve, type-check and validate a composed config (`mpo.config.checks` included), before any model
    library is imported. Every failure is a one-line `ConfigError` (or `DataError` for a local input)."""
    from mpo.config.checks import check_config

    try:
        config = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as err:
        raise ConfigError(f"{err.full_key}: required but not set; add {err.full_key}=<value>") from err
    except OmegaConfBaseException as err:  # a mistyped value, named by OmegaConf
        raise ConfigError(f"{err.full_key or 'config'}: {one_line(str(err).split(chr(10))[0])}") from err
    check_config(config)
    return validate(config)
