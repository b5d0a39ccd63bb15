"""The shared stages every method draws on, each an artifact (docs/design.md §3):

task data -> base model (tokenizer + init) -> reference (SFT) -> reference samples -> preference pairs per
objective -> single-objective policies (DPO) / reward models / log-ratio tensor.

Each stage's spec holds exactly the config that determines it; its dependencies' keys go into its digest.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import datasets
from datasets import Dataset, DatasetDict
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mpo.artifacts import Artifact, ArtifactStore, cpu_seconds, peak_memory_mb
from mpo.config import Config, RLConfig
from mpo.console import announced, training_progress
from mpo.costs import category
from mpo.evaluation import Samples, sample
from mpo.policies import Decoding, HFPolicy
from mpo.scoring import build_scorer

log = logging.getLogger(__name__)


def load_from_disk(path: str | Path) -> Dataset | DatasetDict:
    """A dataset artifact, read into memory. Read memory-mapped (datasets' default), every transform of it
    (a split, TRL's tokenisation) would write cache files into the published artifact's directory."""
    return datasets.load_from_disk(str(path), keep_in_memory=True)


def plain(node: Any) -> Any:
    """A config node (dataclass, DictConfig or value) as plain JSON-able data, for specs and W&B."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    return OmegaConf.to_container(OmegaConf.structured(node), resolve=True)


@dataclass
class RunContext:
    """What a method needs: the typed config, the artifact store, a tracker, and the costs it incurred."""

    cfg: Config
    store: ArtifactStore
    tracker: Any = None  # mpo.tracking.Tracker; None in unit tests
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the cost category (mpo.costs) of the stages recorded now; shared stages are told by name
    charge: str = "own"

    @property
    def objectives(self) -> list[str]:
        return list(self.cfg.task.objectives)

    @cached_property
    def scorers(self) -> dict[str, Callable]:
        """One checked scorer per objective (`mpo.scoring`): a bad score stops the run, naming the objective."""
        return {name: build_scorer(name, plain(obj.scorer)) for name, obj in self.cfg.task.objectives.items()}

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
        wall0, cpu0 = time.perf_counter(), cpu_seconds()
        yield
        self.costs[name] = {"seconds": time.perf_counter() - wall0, "cpu_seconds": cpu_seconds() - cpu0,
                            "peak_memory_mb": peak_memory_mb(), "category": category(name, self.charge),
                            "reused": False, "artifact": None}

    def record(self, name: str, artifact: Artifact) -> Artifact:
        """Remember a stage this method used, with what it cost to build (paid once, maybe by another run)."""
        cost = artifact.cost
        earlier = self.costs.get(name)
        built_here = earlier is not None and not earlier["reused"]  # later look-ups find our own build
        self.costs[name] = {
            "seconds": cost.get("wall_seconds", 0.0),
            "cpu_seconds": cost.get("cpu_seconds", 0.0),
            "peak_memory_mb": cost.get("peak_memory_mb", 0.0),
            "trained_sequences": int(artifact.info.get("trained_sequences", 0)),
            "category": earlier["category"] if earlier else category(name, self.charge),
            "reused": artifact.reused and not built_here,
            "artifact": artifact.key,
        }
        return artifact

    def callbacks(self, stage: str) -> list:
        """A trainer's callbacks: its progress bar (`mpo.console`) and its metrics to W&B (`mpo.tracking`)."""
        return [training_progress(stage), *([self.tracker.callback(stage)] if self.tracker is not None else [])]

    def log_stage(self, stage: str, artifact: Artifact) -> None:
        if self.tracker is not None and not artifact.reused:
            metrics = {k: v for k, v in artifact.info.items() if isinstance(v, (int, float))}
            self.tracker.log_stage(stage, metrics)
            if artifact.info.get("completions"):  # an RL stage's last sampled completions, with their rewards
                self.tracker.log_table(f"train/{stage}/completions", artifact.info["completions"])

    def build(self, name: str, stage: str, spec: dict, builder, deps=()) -> Artifact:
        artifact = self.store.get_or_build(stage, spec, announced(name, builder), deps,
                                           collective=stage in COLLECTIVE_STAGES)
        self.log_stage(name, artifact)
        return self.record(name, artifact)


# stages every rank of a multi-process job builds together (mpo.distributed): training through a TRL trainer,
# and sampling, which shards its chunks across ranks
COLLECTIVE_STAGES = frozenset({"reference", "single_policy", "reward_model", "rl_policy", "mixed_po_dpo",
                               "reference_samples", "proposal_samples", "log_ratios"})


# ---------------------------------------------------------------- data and reference
def task_data(ctx: RunContext) -> tuple[DatasetDict, Artifact]:
    spec = {"data": plain(ctx.cfg.task.data)}

    def build(out: Path) -> dict:
        data: DatasetDict = instantiate(spec["data"])
        data.save_to_disk(str(out / "data"))
        return {split: len(ds) for split, ds in data.items()}

    artifact = ctx.build("data", "data", spec, build)
    return load_from_disk(str(artifact.path / "data")), artifact


def reference_policy(ctx: RunContext) -> Artifact:
    """The SFT reference policy's directory (a built tiny model, or a hub/local model, fine-tuned or not)."""
    policy = ctx.cfg.policy
    data, data_artifact = task_data(ctx)
    if policy.pretrained is None:
        base_spec = {"vocab_size": policy.vocab_size, "architecture": plain(policy.architecture)}

        def build_base(out: Path) -> dict:
            from mpo.training.sft import build_base_model

            return build_base_model(data["train"]["text"], policy.vocab_size, instantiate(base_spec["architecture"]), out)

        base = ctx.build("base_model", "base_model", base_spec, build_base, [data_artifact])
        base_path, deps = str(base.path), [data_artifact, base]
    else:
        base_path, deps = policy.pretrained, [data_artifact]
    if not policy.sft:
        return ctx.build("reference", "reference", {"pretrained": base_path, "sft": False}, _link(base_path), deps)
    spec = {"base": base_path if policy.pretrained else None, "trainer": plain(ctx.cfg.trainer.sft), "seed": ctx.cfg.seed}

    def build(out: Path) -> dict:
        from mpo.training.sft import train_sft

        eval_texts = data["eval"]["text"][:256] if "text" in data["eval"].column_names else ()
        return train_sft(base_path, data["train"], out, trl_args=ctx.cfg.trainer.sft, eval_texts=eval_texts,
                         callbacks=ctx.callbacks("sft"), seed=ctx.cfg.seed)

    return ctx.build("reference", "reference", spec, build, deps)


def _link(pretrained: str):
    def build(out: Path) -> dict:
        (out / "pretrained.txt").write_text(pretrained)
        return {}

    return build


def model_path(artifact: Artifact) -> str:
    """Where a policy artifact's weights are: its own dir, or the hub name / path it points at."""
    pointer = artifact.path / "pretrained.txt"
    return pointer.read_text().strip() if pointer.exists() else str(artifact.path)


def device(ctx: RunContext) -> torch.device:
    if ctx.cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(ctx.cfg.device)


def load_policy(ctx: RunContext, artifact_or_path: Artifact | str) -> HFPolicy:
    """A full model, or a LoRA adapter merged into its base (`mpo.adapters`), on the run's device."""
    path = model_path(artifact_or_path) if isinstance(artifact_or_path, Artifact) else artifact_or_path
    policy = HFPolicy.from_pretrained(path, ctx.cfg.policy.dtype)
    policy.model.to(device(ctx))
    return policy


def load_components(ctx: RunContext, artifacts: list[Artifact]) -> tuple[list, list]:
    """The K models a `LogLinearMixture` mixes, and their tokenizers: K LoRA adapters of one base as the
    components of one `AdapterStack` (the base in memory once), anything else as K loaded policies."""
    from mpo.adapters import AdapterStack, adapter_base, is_adapter
    from mpo.policies import load_tokenizer

    paths = [model_path(a) for a in artifacts]
    if not all(map(is_adapter, paths)) or len({adapter_base(p) for p in paths}) != 1:
        policies = [load_policy(ctx, a) for a in artifacts]
        return [p.model for p in policies], [p.tokenizer for p in policies]
    stack = AdapterStack(paths, ctx.cfg.policy.dtype).to(device(ctx))
    return stack.components, [load_tokenizer(p) for p in paths]


def lora_spec(ctx: RunContext) -> dict:
    """What a trained policy's spec adds under ``policy.lora`` (nothing for a full fine-tune: same digests)."""
    lora = ctx.cfg.policy.lora
    return {} if lora is None else {"lora": plain(lora)}


def decoding(ctx: RunContext, seed_offset: int = 0) -> Decoding:
    e = ctx.cfg.eval
    return Decoding(max_new_tokens=e.max_new_tokens, temperature=e.temperature, top_p=e.top_p,
                    seed=ctx.cfg.seed + seed_offset, batch_size=e.batch_size)


# ---------------------------------------------------------------- preference pairs
def reference_samples(ctx: RunContext, reference: Artifact, n_prompts: int, n: int, name: str) -> tuple[Samples, Artifact]:
    """n responses from the reference to each of the first n_prompts train prompts (shared by objectives)."""
    prompts = task_data(ctx)[0]["train"]["prompt"][:n_prompts]
    # training-side samples: the evaluation's decoding, but a fixed batch size (chunks seed the sampler, so
    # eval.batch_size must not change training data) and a seed of their own per use
    offset = 17 + sum(map(ord, name))
    dec = Decoding(**{**decoding(ctx, seed_offset=offset).__dict__, "batch_size": 64})
    return reference_samples_on(ctx, reference, prompts, n, dec, name)


def reference_samples_on(
    ctx: RunContext, reference: Artifact, prompts: list[str], n: int, dec: Decoding, name: str
) -> tuple[Samples, Artifact]:
    """n responses from the reference to each prompt (text, token ids, whether each ended with EOS)."""
    return samples_on(ctx, reference, prompts, n, dec, name, stage="reference_samples")


def samples_on(
    ctx: RunContext, policy: Artifact, prompts: list[str], n: int, dec: Decoding, name: str, stage: str
) -> tuple[Samples, Artifact]:
    """n responses from a policy artifact to each prompt, kept as text and as the sampled token ids: an artifact."""
    spec = {"prompts": list(prompts), "n": n, "decoding": dec.__dict__, "token_ids": True}

    def build(out: Path) -> dict:
        samples = sample(load_policy(ctx, policy), prompts, n, dec, shard=True)  # a collective stage
        rows = {"prompt": samples.flat_prompts, "response": samples.responses, "finished": samples.finished,
                "prompt_ids": samples.prompt_ids, "completion_ids": samples.completion_ids}
        Dataset.from_dict(rows).save_to_disk(str(out / "samples"))
        return {"responses": len(samples.responses), "finished": sum(samples.finished) / len(samples.finished)}

    artifact = ctx.build(name, stage, spec, build, [policy])
    rows = load_from_disk(str(artifact.path / "samples"))
    return Samples(list(prompts), n, rows["response"], rows["finished"], rows["prompt_ids"], rows["completion_ids"]), artifact


def preference_pairs(ctx: RunContext, objective: str) -> tuple[Dataset, Artifact]:
    """prompt/chosen/rejected pairs for one objective: labelled reference samples, or a dataset's columns."""
    obj = ctx.cfg.task.objectives[objective]
    if obj.pairs.source == "dataset":
        spec = {"dataset": plain(obj.pairs.dataset)}

        def build_loaded(out: Path) -> dict:
            pairs: Dataset = instantiate(spec["dataset"])
            pairs.save_to_disk(str(out / "pairs"))
            return {"pairs": len(pairs)}

        artifact = ctx.build(f"pairs_{objective}", "pairs", spec, build_loaded)
        return load_from_disk(str(artifact.path / "pairs")), artifact
    reference = reference_policy(ctx)
    task = ctx.cfg.task
    samples, sample_artifact = reference_samples(
        ctx, reference, task.n_pair_prompts, task.responses_per_prompt, "reference_samples"
    )
    spec = {"scorer": plain(obj.scorer), "pairs": plain(obj.pairs), "seed": ctx.cfg.seed}

    def build(out: Path) -> dict:
        pairs = label_pairs(samples, ctx.scorers[objective], obj.pairs.labeling, obj.pairs.bt_temperature, ctx.cfg.seed)
        pairs.save_to_disk(str(out / "pairs"))
        return {"pairs": len(pairs), "mean_gap": sum(pairs["gap"]) / max(len(pairs), 1)}

    artifact = ctx.build(f"pairs_{objective}", "pairs", spec, build, [sample_artifact])
    return load_from_disk(str(artifact.path / "pairs")), artifact


def _sigmoid(z: float) -> float:
    """Stable for any z (no overflow of exp at large |z|)."""
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def label_pairs(samples: Samples, scorer: Callable, labeling: str, temperature: float, seed: int) -> Dataset:
    """Consecutive responses to one prompt form a pair; the scorer decides which is chosen.

    Ties are dropped under deterministic labelling (they carry no preference). When the samples carry
    their token ids, so do the pairs (``prompt_ids``, ``chosen_ids``, ``rejected_ids``): DPO then trains
    on exactly the sampled tokens, EOS only where the sample finished.
    """
    scores = scorer(samples.flat_prompts, samples.responses)
    rng = random.Random(seed)
    with_ids = samples.completion_ids is not None
    rows: dict[str, list] = {"prompt": [], "chosen": [], "rejected": [], "gap": []}
    if with_ids:
        rows |= {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    for i, prompt in enumerate(samples.prompts):
        for j in range(0, samples.n - 1, 2):
            a, b = i * samples.n + j, i * samples.n + j + 1
            gap = scores[a] - scores[b]
            if labeling == "deterministic":
                if gap == 0:
                    continue
                a_wins = gap > 0
            else:
                a_wins = rng.random() < _sigmoid(gap / temperature)
            win, lose = (a, b) if a_wins else (b, a)
            rows["prompt"].append(prompt)
            rows["chosen"].append(samples.responses[win])
            rows["rejected"].append(samples.responses[lose])
            rows["gap"].append(scores[win] - scores[lose])
            if with_ids:
                rows["prompt_ids"].append(samples.prompt_ids[win])
                rows["chosen_ids"].append(samples.completion_ids[win])
                rows["rejected_ids"].append(samples.completion_ids[lose])
    return Dataset.from_dict(rows)


# ---------------------------------------------------------------- trained stages
def single_policy(ctx: RunContext, objective: str) -> Artifact:
    """π_k, charged to the run's "singles" cost: DPO from the reference on objective k's pairs, or with
    ``method.singles=rl`` RL from the reference on objective k's normalised reward model; the task's β."""
    with ctx.charged_to("singles"):
        if getattr(ctx.cfg.method, "singles", "dpo") == "rl":
            return rl_single_policy(ctx, objective)
        return dpo_single_policy(ctx, objective)


def rl_single_policy(ctx: RunContext, objective: str) -> Artifact:
    """RL (the RL baselines' default settings, `RLConfig`) on objective k's reward model alone."""
    from mpo.baselines.rl_common import normalised, rl_policy

    rl = RLConfig()
    model = reward_model(ctx, objective)
    prompts, (reward,), samples = normalised(ctx, rl, [model], name=f"reward_normalization_{objective}")
    return rl_policy(ctx, f"single_rl_{objective}", {"method": "single", "objective": objective}, rl, prompts,
                     [reward], [1.0], [model, samples])


def dpo_single_policy(ctx: RunContext, objective: str) -> Artifact:
    reference = reference_policy(ctx)
    pairs, pairs_artifact = preference_pairs(ctx, objective)
    spec = {"beta": ctx.cfg.task.beta, "trainer": plain(ctx.cfg.trainer.dpo), "seed": ctx.cfg.seed, **lora_spec(ctx)}

    def build(out: Path) -> dict:
        from mpo.training.dpo import train_dpo

        split = pairs.train_test_split(test_size=min(0.1, 256 / max(len(pairs), 1)), seed=ctx.cfg.seed)
        return train_dpo(model_path(reference), _pair_columns(split["train"]), out, beta=ctx.cfg.task.beta,
                         trl_args=ctx.cfg.trainer.dpo, eval_pairs=_pair_columns(split["test"]),
                         callbacks=ctx.callbacks(f"dpo_{objective}"), seed=ctx.cfg.seed, lora=ctx.cfg.policy.lora)

    return ctx.build(f"single_{objective}", "single_policy", spec, build, [reference, pairs_artifact])


def reward_model(ctx: RunContext, objective: str) -> Artifact:
    """A Bradley-Terry reward model for objective k (TRL RewardTrainer) on the reference's backbone."""
    reference = reference_policy(ctx)
    pairs, pairs_artifact = preference_pairs(ctx, objective)
    spec = {"trainer": plain(ctx.cfg.trainer.reward_model), "seed": ctx.cfg.seed}

    def build(out: Path) -> dict:
        from mpo.training.reward_model import train_reward_model

        split = pairs.train_test_split(test_size=min(0.1, 256 / max(len(pairs), 1)), seed=ctx.cfg.seed)
        return train_reward_model(model_path(reference), _pair_columns(split["train"]), out,
                                  trl_args=ctx.cfg.trainer.reward_model, eval_pairs=_pair_columns(split["test"]),
                                  callbacks=ctx.callbacks(f"reward_model_{objective}"), seed=ctx.cfg.seed)

    return ctx.build(f"reward_model_{objective}", "reward_model", spec, build, [reference, pairs_artifact])


def _pair_columns(pairs: Dataset) -> Dataset:
    """The columns a preference trainer reads: text, and the sampled token ids when the pairs have them."""
    ids = [c for c in ("prompt_ids", "chosen_ids", "rejected_ids") if c in pairs.column_names]
    return pairs.select_columns(["prompt", "chosen", "rejected", *ids])
