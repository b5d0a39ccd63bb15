"""Typed schemas behind every config group, registered in Hydra's ConfigStore.

Composition merges the YAML files into these dataclasses, so an unknown key or a wrong type fails there with
OmegaConf's message naming the key. Value checks (β > 0, weights on the simplex, an objective that exists)
run in ``__post_init__`` and in `validate`; `mpo.config.checks` refuses what composition lets through (keys
added with ``+``, trainer kwargs, ``_target_`` arguments, counts, local paths). `load_config` runs them all
before any model library is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from mpo.core import simplex
from mpo.infra.devices import FLOAT16_ON_CPU
from mpo.infra.errors import ConfigError


def check_simplex(weights: list[float], key: str, n: Optional[int] = None) -> None:
    """`mpo.core.simplex.check_simplex` as a config error naming ``key``."""
    try:
        simplex.check_simplex(weights, len(weights) if n is None else n, key=key)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def check_choice(value: Any, key: str, options: tuple) -> None:
    if value not in options:
        raise ConfigError(f"{key}={value!r}: use one of {', '.join(map(str, options))}")


# ---------------------------------------------------------------- task
@dataclass
class PairsConfig:
    # "sampled": sample responses from the reference and label them with the scorer;
    # "dataset": take prompt/chosen/rejected from `dataset` (a `_target_` loader such as mpo.data.hub.load_pairs)
    source: str = "sampled"
    # how a sampled pair is labelled: "deterministic" (higher score is chosen) or "bradley_terry"
    # (chosen with probability sigmoid((r_a - r_b) / bt_temperature))
    labeling: str = "deterministic"
    bt_temperature: float = 0.1
    dataset: Optional[Any] = None

    def __post_init__(self) -> None:
        check_choice(self.source, "pairs.source", ("sampled", "dataset"))
        check_choice(self.labeling, "pairs.labeling", ("deterministic", "bradley_terry"))
        if self.source == "dataset" and self.dataset is None:
            raise ConfigError("pairs.source='dataset' needs pairs.dataset (a `_target_` loader node)")
        if self.bt_temperature <= 0:
            raise ConfigError(f"pairs.bt_temperature={self.bt_temperature} must be > 0")


@dataclass
class ObjectiveConfig:
    # any `_target_` whose instance is a callable score(prompts, responses) -> list[float]
    scorer: Any = MISSING
    pairs: PairsConfig = field(default_factory=PairsConfig)


def _objective(name: str, node: Any) -> ObjectiveConfig:
    if isinstance(node, ObjectiveConfig):
        return node
    if not isinstance(node, dict) or "_target_" not in (node.get("scorer") or {}):
        raise ConfigError(f"task.objectives.{name} needs a scorer with a `_target_` (a callable "
                          "score(prompts, responses) -> list[float])")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ObjectiveConfig), node))
    except Exception as err:  # an unknown key or a wrong type, named by OmegaConf
        raise ConfigError(f"task.objectives.{name}: {err}") from err


@dataclass
class TaskConfig:
    name: str = MISSING
    # KL strength shared by DPO, RL and MPO (the paper uses 0.1 and 0.5)
    beta: float = 0.1
    # `_target_` returning a datasets.DatasetDict with splits train/eval and columns `prompt` (+ `text` for SFT)
    data: Any = MISSING
    # prompts from the train split used to build sampled preference pairs
    n_pair_prompts: int = 512
    # responses sampled per pair prompt (>= 2; every two consecutive responses form one pair)
    responses_per_prompt: int = 2
    # name -> ObjectiveConfig; typed loosely so an objective can be added from the command line
    # (+task.objectives.<name>.scorer={_target_:...}) and checked against ObjectiveConfig below
    objectives: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.objectives = {name: _objective(name, node) for name, node in self.objectives.items()}
        if not self.beta > 0:
            raise ConfigError(f"task.beta={self.beta} must be > 0 (it is the KL strength)")
        if len(self.objectives) < 1:
            raise ConfigError("task.objectives is empty: name at least one objective with a scorer")
        if self.responses_per_prompt < 2:
            raise ConfigError(f"task.responses_per_prompt={self.responses_per_prompt}: need >= 2 to form a pair")


# ---------------------------------------------------------------- policy
@dataclass
class LoRAConfig:
    """A PEFT LoRA adapter (task type CAUSAL_LM): ΔW = (alpha / r)·B·A on every module named in target_modules."""

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    # names (last components) of the linear layers to adapt, e.g. q_proj/k_proj/v_proj/o_proj (Llama, Qwen)
    # or c_attn/c_proj (GPT-2); checked against the model when a stage builds its adapter
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"policy.lora.r={self.r}: the adapter's rank must be at least 1")
        if not self.alpha > 0:
            raise ConfigError(f"policy.lora.alpha={self.alpha}: must be > 0 (the update is scaled by alpha / r)")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"policy.lora.dropout={self.dropout}: must lie in [0, 1)")
        if not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
            raise ConfigError("policy.lora.target_modules is empty: name the linear layers to adapt, e.g. "
                              "[q_proj,v_proj]")


@dataclass
class PolicyConfig:
    name: str = MISSING
    # a hub name or local directory of a causal LM; null = build a tiny model from `architecture`
    pretrained: Optional[str] = None
    # for built models: the transformers config class and its kwargs, and the tokenizer's vocabulary size
    architecture: Optional[Any] = None
    vocab_size: int = 1024
    # supervised fine-tuning on the task's `text` column makes the reference policy
    sft: bool = True
    # weights of the policy, its trained stages and reward models: float32, bfloat16 or float16
    dtype: str = "float32"
    # null: every trained policy (DPO, RL) is a full fine-tune; set: a LoRA adapter on the reference (mpo.models.adapters)
    lora: Optional[LoRAConfig] = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"policy.dtype={self.dtype!r}: use one of {list(DTYPES)}")
        if self.pretrained is None and self.architecture is None:
            raise ConfigError(f"policy {self.name!r} has neither `pretrained` nor `architecture`: set one")


# ---------------------------------------------------------------- method
DTYPES = ("float32", "bfloat16", "float16")
# how the single-objective policies π_k are trained (method.singles)
SINGLES = ("dpo", "rl")


@dataclass
class MethodConfig:
    _target_: str = MISSING
    name: str = MISSING


@dataclass
class ReferenceMethod(MethodConfig):
    _target_: str = "mpo.methods.reference"
    name: str = "reference"


@dataclass
class SingleMethod(MethodConfig):
    _target_: str = "mpo.methods.single"
    name: str = "single"
    # which objective's DPO policy to evaluate: its name, or its position in task.objectives ("0", "1", ...)
    # so that a sweep over methods can list single_0, single_1 whatever the task's objectives are called
    objective: str = MISSING
    # how π_k is trained: "dpo" on its pairs, or "rl" on its own reward model (the RL baselines' RLConfig)
    singles: str = "dpo"

    def __post_init__(self) -> None:
        check_choice(self.singles, "method.singles", SINGLES)


@dataclass
class EstimatorConfig:
    # where the samples that estimate MPO's objective come from: "mixture" = defensive multiple importance
    # sampling from π_ref and every π_k (sound at any distance from π_ref); "reference" = π_ref only (the
    # paper's estimator; collapses onto a vertex once the π_k are tens of nats from π_ref)
    proposal: str = "mixture"
    # train prompts, and samples per prompt from all proposal components together
    n_prompts: int = 256
    samples_per_prompt: int = 16
    # share of a prompt's first-round samples drawn from π_ref (the rest split evenly over the π_k)
    reference_share: float = 0.25
    # of samples_per_prompt, how many a second round draws from the token-level mixture at the first λ̂
    round2_samples: int = 0
    scoring_batch_size: int = 64
    # warn when the median effective sample size at λ̂ is below this fraction of samples_per_prompt
    min_ess_fraction: float = 0.1

    def __post_init__(self) -> None:
        check_choice(self.proposal, "method.estimator.proposal", ("mixture", "reference"))
        if self.n_prompts < 1 or self.samples_per_prompt < 1:
            raise ConfigError("method.estimator.n_prompts and samples_per_prompt must be >= 1")
        if not 0 < self.reference_share < 1:
            raise ConfigError(f"method.estimator.reference_share={self.reference_share} must lie in (0, 1)")
        if not 0 <= self.round2_samples < self.samples_per_prompt:
            raise ConfigError(f"method.estimator.round2_samples={self.round2_samples} must be in "
                              f"[0, samples_per_prompt={self.samples_per_prompt})")
        if self.proposal == "reference" and self.round2_samples:
            raise ConfigError("method.estimator.round2_samples needs proposal=mixture (a second proposal component)")


@dataclass
class BSMDConfig:
    steps: int = 2000
    # null: c/sqrt(steps) with a scale-aware c (see mpo.core.bsmd)
    step_size: Optional[float] = None
    # prompts per step; null = all
    batch_size: Optional[int] = 64


@dataclass
class TokenGameConfig:
    # how the token-level game is estimated (method.target=token): "direct" = draws of q_λ at every grid point vs
    # π_ref's proposal draws (no weights); "reweighted" = the proposal samples reweighted (needs overlap)
    estimator: str = "direct"
    n_prompts: int = 128  # direct: the first n_prompts proposal prompts, and draws per prompt at each grid point
    samples_per_prompt: int = 4
    # direct, K = 2: grid points 0, 1/grid_steps, ..., 1 for λ_1 (K ≥ 3 uses mpo.core.token_game.token_grid)
    grid_steps: int = 10

    def __post_init__(self) -> None:
        check_choice(self.estimator, "method.token_game.estimator", ("direct", "reweighted"))
        if self.n_prompts < 1 or self.samples_per_prompt < 1 or self.grid_steps < 1:
            raise ConfigError("method.token_game.n_prompts, samples_per_prompt and grid_steps must be >= 1")


@dataclass
class MPOMethod(MethodConfig):
    _target_: str = "mpo.methods.mpo"
    name: str = "mpo"
    # preset weights (one per objective, on the simplex) skip the solve: the MORLHF special case (Lemma 3.9)
    weights: Optional[list[float]] = None
    # ablation: leave this objective's policy out of the mixture
    drop: Optional[str] = None
    # which λ the mixture uses: "exact" (the certified minimiser of the sample objective) or "bsmd" (the
    # paper's stochastic mirror descent); both are computed and reported
    solver: str = "exact"
    # what λ equalises: "regret" (the paper's max-min, min_λ F(λ): regret in nats, on each π_k's own implicit-reward
    # scale) or "win_rate" (max_λ min_k of the mixture's win-rate against π_ref under each π_k's ranking, from the
    # same cached samples: mpo.core.winrate)
    criterion: str = "regret"
    # the law λ is chosen for: "sequence" (the paper's: the sequence-level mixture Π_k π_k^λ_k / Z) or "token" (the
    # token-level mixture that decoding=token samples at K forward passes per token: mpo.core.token_game)
    target: str = "sequence"
    token_game: TokenGameConfig = field(default_factory=TokenGameConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    bsmd: BSMDConfig = field(default_factory=BSMDConfig)
    # "sequence" (default): sampling-importance-resampling toward the sequence-level mixture, the one λ is optimal
    # for, from num_candidates token-level draws per response; "token": the token-level mixture (one draw)
    decoding: str = "sequence"
    num_candidates: int = 64
    # sequence decoding: share of the candidates drawn from the token-level mixture, the rest from the π_k with
    # λ_k > 0, weighted against their balance density (defensive resampling); null = all from the token-level mixture
    defensive_share: Optional[float] = None
    # the row's label in place of the one the settings give (method=mpo_paper: mpo[paper]); null = from the settings
    label: Optional[str] = None
    # the π_k it mixes: "dpo" on each objective's pairs, or "rl" on each objective's reward model
    singles: str = "dpo"

    def __post_init__(self) -> None:
        check_choice(self.singles, "method.singles", SINGLES)
        check_choice(self.decoding, "method.decoding", ("token", "sequence"))
        check_choice(self.solver, "method.solver", ("exact", "bsmd"))
        check_choice(self.criterion, "method.criterion", ("regret", "win_rate"))
        check_choice(self.target, "method.target", ("sequence", "token"))
        if self.defensive_share is not None and not (0 < self.defensive_share < 1 and self.decoding == "sequence"):
            raise ConfigError(f"method.defensive_share={self.defensive_share}: the share of sequence-level candidates "
                              "drawn from the token-level mixture must lie in (0, 1), with method.decoding=sequence")
        if self.target == "token" and self.decoding != "token":
            raise ConfigError("method.target=token chooses λ for the token-level mixture, but method.decoding="
                              f"{self.decoding} decodes another law: add method.decoding=token (or use method=mpo_token)")
        if self.target == "token" and self.token_game.n_prompts > self.estimator.n_prompts:
            raise ConfigError(f"method.token_game.n_prompts={self.token_game.n_prompts} compares with π_ref's proposal "
                              f"draws of method.estimator.n_prompts={self.estimator.n_prompts} prompts: lower it")
        if self.target == "token" and self.estimator.round2_samples:
            raise ConfigError("method.target=token plays the game on the first-round proposal samples: set "
                              "method.estimator.round2_samples=0")
        if self.target == "token" and self.solver == "bsmd":
            raise ConfigError("method.target=token has its own solve (mpo.core.token_game): drop method.solver=bsmd")
        if self.criterion == "win_rate" and self.solver == "bsmd":
            raise ConfigError("method.solver=bsmd solves the regret game; method.criterion=win_rate has its own "
                              "solve (mpo.core.winrate): drop method.solver=bsmd or use method.criterion=regret")


@dataclass
class RLConfig:
    # "rloo" (default: its loss is E[r] − β·KL(π‖π_ref) at sequence level) or "grpo", both TRL trainers
    algorithm: str = "rloo"
    # reward normalisation on reference samples: "zscore" or "p" (the P operator, docs/design.md §1)
    normalization: str = "zscore"
    # reference samples per prompt used to fit the normaliser
    normalization_samples: int = 4
    n_prompts: int = 256

    def __post_init__(self) -> None:
        check_choice(self.algorithm, "rl.algorithm", ("grpo", "rloo"))
        check_choice(self.normalization, "rl.normalization", ("zscore", "p"))


@dataclass
class MORLHFMethod(MethodConfig):
    _target_: str = "mpo.baselines.morlhf.build"
    name: str = "morlhf"
    # one weight per objective on the simplex; null = uniform
    weights: Optional[list[float]] = None
    rl: RLConfig = field(default_factory=RLConfig)


@dataclass
class MaxMinMethod(MethodConfig):
    _target_: str = "mpo.baselines.maxmin_rlhf.build"
    name: str = "maxmin_rlhf"
    rl: RLConfig = field(default_factory=RLConfig)
    # "per_sample": min_k r̃_k on every response (the public code); "expected": min_k E[r̃_k] (the paper's stated
    # objective: each batch rewarded by its worst objective on average)
    min_of: str = "per_sample"
    # learn a mixture of `n_groups` reward models by hard EM on pooled, unlabelled pairs
    em: bool = False
    n_groups: int = 2
    em_iterations: int = 4
    # pooled pairs are attributed to synthetic annotators of this many pairs each
    pairs_per_user: int = 16

    def __post_init__(self) -> None:
        check_choice(self.min_of, "method.min_of", ("per_sample", "expected"))


@dataclass
class RewardSoupsMethod(MethodConfig):
    _target_: str = "mpo.baselines.reward_soups.build"
    name: str = "reward_soups"
    weights: Optional[list[float]] = None
    # "mpo": interpolate with MPO's max-min weights λ̂ (MPO's default estimator and solver) instead of `weights`
    weights_from: Optional[str] = None
    # the π_k it interpolates: "dpo" or "rl" (as MPO's)
    singles: str = "dpo"

    def __post_init__(self) -> None:
        check_choice(self.singles, "method.singles", SINGLES)
        check_choice(self.weights_from, "method.weights_from", (None, "mpo"))
        if self.weights_from is not None and self.weights is not None:
            raise ConfigError("method.weights and method.weights_from=mpo both set the soup's weights: keep one")


@dataclass
class MixedPOMethod(MethodConfig):
    _target_: str = "mpo.baselines.mixed_po.build"
    name: str = "mixed_po"
    weights: Optional[list[float]] = None
    # easy pairs: scalarised reward-model gap above `threshold`, or in the top `quantile` if threshold is null
    threshold: Optional[float] = None
    quantile: float = 0.5
    # share of trainer.budget.steps spent by the DPO stage; the RL stage gets the rest (one budget in all)
    dpo_share: float = 0.5
    rl: RLConfig = field(default_factory=RLConfig)

    def __post_init__(self) -> None:
        if not 0 < self.quantile < 1:
            raise ConfigError(f"method.quantile={self.quantile} must lie in (0, 1)")
        if not 0 < self.dpo_share < 1:
            raise ConfigError(f"method.dpo_share={self.dpo_share} must lie in (0, 1)")


# ---------------------------------------------------------------- the rest
@dataclass
class BudgetConfig:
    # optimizer steps of every trained stage after SFT (each DPO policy, each reward model, each RL run;
    # Mixed-PO's DPO and RL stages share one budget); null: each stage's own trainer keywords decide
    steps: Optional[int] = 60
    # sequences per optimizer step: a preference pair counts 2 (DPO, reward models), an RL completion 1
    sequences_per_step: int = 64


@dataclass
class TrainerConfig:
    # one budget for every trained stage (mpo.config.budget); it sets max_steps and the batch of dpo, reward_model, rl
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    # keyword arguments for each TRL stage's *Config (on top of mpo.training.common.trl_kwargs)
    sft: dict[str, Any] = field(default_factory=dict)
    dpo: dict[str, Any] = field(default_factory=dict)
    reward_model: dict[str, Any] = field(default_factory=dict)
    rl: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoggerConfig:
    # "wandb" or "none"
    backend: str = "wandb"
    project: str = "mpo"
    entity: Optional[str] = None
    # null: online when a W&B key is configured, offline otherwise
    mode: Optional[str] = None
    # null: the sweep name (multirun) or the experiment name
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    init_timeout: float = 30.0

    def __post_init__(self) -> None:
        check_choice(self.backend, "logger.backend", ("wandb", "none"))
        check_choice(self.mode, "logger.mode", (None, "online", "offline", "disabled"))


@dataclass
class PathsConfig:
    root: str = MISSING
    artifacts: str = MISSING
    output_dir: str = MISSING


MIN_EVAL_PROMPTS = 2  # a bootstrap over prompts needs two of them to have any width


@dataclass
class EvalConfig:
    n_prompts: int = 128
    samples_per_prompt: int = 4
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 64
    bootstrap: int = 1000
    # confidence level of the bootstrap interval
    ci: float = 0.95
    n_show_samples: int = 8

    def __post_init__(self) -> None:
        if not 0 < self.ci < 1:
            raise ConfigError(f"eval.ci={self.ci} must lie in (0, 1)")
        if 0 < self.n_prompts < MIN_EVAL_PROMPTS:  # counts below 1 are refused with the other counts
            raise ConfigError(f"eval.n_prompts={self.n_prompts}: the confidence intervals resample prompts, so "
                              f"evaluation needs at least {MIN_EVAL_PROMPTS} (one prompt gives a zero-width interval); "
                              f"set eval.n_prompts={MIN_EVAL_PROMPTS} or more")
        if not 0 < self.top_p <= 1 or self.temperature <= 0:
            raise ConfigError("eval.top_p must lie in (0, 1] and eval.temperature must be > 0")


@dataclass
class Config:
    task: TaskConfig = MISSING
    policy: PolicyConfig = MISSING
    method: Any = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    paths: PathsConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    experiment_name: str = "default"
    seed: int = 0
    device: str = "auto"
    # torch CPU threads (0: torch's default, or the cores split between a parallel launcher's n_jobs)
    threads: int = 0
    # seconds a job waits for another job that is building an artifact it needs, before giving up
    lock_timeout: float = 6 * 3600.0
    # multi-process jobs (torchrun, accelerate launch): seconds a rank waits for the others at one step
    # (rank 0 building samples or evaluating while the others wait) before it stops, naming the step
    distributed_timeout: float = 3600.0

    def __post_init__(self) -> None:
        if isinstance(self.seed, int) and not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed={self.seed}: must lie in [0, 2**32 - 1] (={MAX_SEED}), the range numpy "
                              "accepts (TRL seeds numpy with it); pick a seed in that range")
        check_device(self.device)
        if self.device == "cpu" and isinstance(self.policy, PolicyConfig) and self.policy.dtype == "float16":
            raise ConfigError(FLOAT16_ON_CPU.format(why="device=cpu"))


# numpy's seed range (np.random.seed, which TRL's set_seed calls); torch accepts it too
MAX_SEED = 2**32 - 1
DEVICES = "auto (cuda if a GPU is visible, else cpu), cpu, cuda or cuda:<index>"


def check_device(device: str) -> None:
    """The names `mpo.stages.context.device` and the trainers understand (whether the GPU is there is checked
    when the job starts: `mpo.infra.devices.check_device`, which needs torch)."""
    kind, _, index = str(device).partition(":")
    if device in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdigit()):
        return
    raise ConfigError(f"device={device!r}: not a device mpo can run on; use {DEVICES}")


_METHODS = {
    "reference": ReferenceMethod, "single": SingleMethod, "mpo": MPOMethod, "morlhf": MORLHFMethod,
    "maxmin_rlhf": MaxMinMethod, "reward_soups": RewardSoupsMethod, "mixed_po": MixedPOMethod,
}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for name, node in _METHODS.items():
        cs.store(group="method", name=f"_{name}", node=node)


register_configs()
