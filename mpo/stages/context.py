"""What every stage and method works through: `RunContext` (the typed config, the artifact store, the tracker
and the costs a run incurred; `RunContext.build` gets or builds one artifact), loading a policy artifact on the
run's device, the evaluation's decoding, and `MethodOutput`, what a method returns."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets import Dataset, DatasetDict
from omegaconf import OmegaConf

from mpo.config.schema import Config
from mpo.infra.console import announced, training_progress
from mpo.infra.costs import Meter, stage_entry
from mpo.models.policies import Decoding, HFPolicy, TextPolicy
from mpo.scorers.checked import build_scorer
from mpo.store.artifacts import Artifact, ArtifactStore


def load_from_disk(path: str | Path) -> Dataset | DatasetDict:
    """A dataset artifact, read into memory. Read memory-mapped (datasets' default), every transform of it
    (a split, TRL's tokenisation) would write cache files into the published artifact's directory."""
    return datasets.load_from_disk(str(path), keep_in_memory=True)


def config_data(node: Any) -> Any:
    """A config node (dataclass, DictConfig or value) as plain JSON-able data, for specs and W&B."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    return OmegaConf.to_container(OmegaConf.structured(node), resolve=True)


@dataclass
class RunContext:
    """What a method needs: the typed config, the artifact store, a tracker, and the costs it incurred."""

    cfg: Config
    store: ArtifactStore
    tracker: Any = None  # mpo.infra.tracking.Tracker; None in unit tests
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the cost category (mpo.infra.costs) of the stages recorded now; a shared stage says so where it is built
    charge: str = "own"

    @property
    def objectives(self) -> list[str]:
        return list(self.cfg.task.objectives)

    @cached_property
    def scorers(self) -> dict[str, Callable]:
        """One checked scorer per objective (`mpo.scorers.checked`): a bad score stops the run, naming the objective."""
        return {name: build_scorer(name, config_data(obj.scorer)) for name, obj in self.cfg.task.objectives.items()}

    @contextmanager
    def charged_to(self, charge: str) -> Iterator[None]:
        """Charge the stages recorded inside to ``charge`` (e.g. "singles"), unless already recorded."""
        previous, self.charge = self.charge, charge
        try:
            yield
        finally:
            self.charge = previous

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Charge the work inside (not an artifact: redone by every run that needs it) as stage ``name``."""
        meter = Meter()
        yield
        self.costs[name] = stage_entry(meter.reading(), self.charge)

    def record(self, name: str, artifact: Artifact, shared: bool = False) -> Artifact:
        """Remember a stage this method used, with what it cost to build (paid once, maybe by another run);
        ``shared``: a stage every method's comparison needs, charged to "shared" whatever the run charges now."""
        cost = artifact.cost  # the manifest's: wall_seconds, cpu_seconds, peak_memory_mb
        earlier = self.costs.get(name)
        built_here = earlier is not None and not earlier["reused"]  # later look-ups find our own build
        category = earlier["category"] if earlier else "shared" if shared else self.charge
        self.costs[name] = stage_entry({**cost, "seconds": cost.get("wall_seconds", 0.0)}, category,
                                       reused=artifact.reused and not built_here, artifact=artifact.key,
                                       trained_sequences=int(artifact.info.get("trained_sequences", 0)))
        return artifact

    def trainer_callbacks(self, stage: str) -> list:
        """A trainer's callbacks: its progress bar (`mpo.infra.console`) and its metrics to W&B (`mpo.infra.tracking`)."""
        return [training_progress(stage), *([self.tracker.callback(stage)] if self.tracker is not None else [])]

    def log_stage(self, stage: str, artifact: Artifact) -> None:
        if self.tracker is not None and not artifact.reused:
            metrics = {k: v for k, v in artifact.info.items() if isinstance(v, (int, float))}
            self.tracker.log_stage(stage, metrics)
            if artifact.info.get("completions"):  # an RL stage's last sampled completions, with their rewards
                self.tracker.log_table(f"train/{stage}/completions", artifact.info["completions"])

    def build(self, name: str, stage: str, spec: dict, builder, deps=(), *, collective: bool = False,
              shared: bool = False) -> Artifact:
        """The artifact of ``stage`` for ``spec`` (built by ``builder`` unless the store has it), recorded as the
        run's stage ``name``. ``collective``: every rank of a multi-process job builds it together (training
        through a TRL trainer, sharded sampling; `mpo.store.artifacts`); ``shared``: see `record`."""
        artifact = self.store.get_or_build(stage, spec, announced(name, builder), deps, collective=collective)
        self.log_stage(name, artifact)
        return self.record(name, artifact, shared=shared)


def model_path(artifact: Artifact) -> str:
    """Where a policy artifact's weights are: its own dir, or the hub name / path it points at."""
    pointer = artifact.path / "pretrained.txt"
    return pointer.read_text().strip() if pointer.exists() else str(artifact.path)


def device(ctx: RunContext) -> torch.device:
    if ctx.cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(ctx.cfg.device)


def load_policy(ctx: RunContext, artifact_or_path: Artifact | str) -> HFPolicy:
    """A full model, or a LoRA adapter merged into its base (`mpo.models.adapters`), on the run's device."""
    path = model_path(artifact_or_path) if isinstance(artifact_or_path, Artifact) else artifact_or_path
    policy = HFPolicy.from_pretrained(path, ctx.cfg.policy.dtype)
    policy.model.to(device(ctx))
    return policy


def load_components(ctx: RunContext, artifacts: list[Artifact]) -> tuple[list, list]:
    """The K models a `LogLinearMixture` mixes, and their tokenizers: K LoRA adapters of one base as the
    components of one `AdapterStack` (the base in memory once), anything else as K loaded policies."""
    from mpo.models.adapters import AdapterStack, adapter_base, is_adapter
    from mpo.models.policies import load_tokenizer

    paths = [model_path(a) for a in artifacts]
    if not all(map(is_adapter, paths)) or len({adapter_base(p) for p in paths}) != 1:
        policies = [load_policy(ctx, a) for a in artifacts]
        return [p.model for p in policies], [p.tokenizer for p in policies]
    stack = AdapterStack(paths, ctx.cfg.policy.dtype).to(device(ctx))
    return stack.components, [load_tokenizer(p) for p in paths]


def lora_spec(ctx: RunContext) -> dict:
    """What a trained policy's spec adds under ``policy.lora`` (nothing for a full fine-tune: same digests)."""
    lora = ctx.cfg.policy.lora
    return {} if lora is None else {"lora": config_data(lora)}


def decoding(ctx: RunContext, seed_offset: int = 0) -> Decoding:
    e = ctx.cfg.eval
    return Decoding(max_new_tokens=e.max_new_tokens, temperature=e.temperature, top_p=e.top_p,
                    seed=ctx.cfg.seed + seed_offset, batch_size=e.batch_size)


@dataclass
class MethodOutput:
    """What a method's ``build(ctx, method_cfg)`` returns: the policy evaluation samples, its row label, its
    weights (when it has any, and where they came from) and what else it reports (results.json ``method_info``)."""

    policy: TextPolicy
    label: str
    weights: dict[str, float] | None = None
    weights_source: str | None = None  # "bsmd" | "exact" | "win_rate" | "preset" | None
    info: dict[str, Any] = field(default_factory=dict)


def weights_label(name: str, weights) -> str:
    """The row label of a method run with preset weights, e.g. ``mpo[w=0.30,0.70]``."""
    return f"{name}[w=" + ",".join(f"{w:.2f}" for w in weights) + "]"

