"""The shared stages every method draws on, each an artifact (docs/design.md §3):

task data -> base model (tokenizer + init) -> reference (SFT) -> reference samples -> preference pairs per
objective -> reward models (the single-objective policies are `mpo.stages.singles`, the RL stage
`mpo.stages.rl`, the log-ratio tensor `mpo.stages.estimation`).

Each stage's spec holds exactly the config that determines it; its dependencies' keys go into its digest.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

from datasets import Dataset, DatasetDict
from hydra.utils import instantiate

from mpo.data.pairs import pair_columns
from mpo.infra.errors import DataError
from mpo.models.policies import Decoding
from mpo.models.sampling import Samples, sample
from mpo.stages.context import RunContext, config_data, decoding, load_from_disk, load_policy, model_path
from mpo.store.artifacts import Artifact


# ---------------------------------------------------------------- data and reference
def task_data(ctx: RunContext) -> tuple[DatasetDict, Artifact]:
    spec = {"data": config_data(ctx.cfg.task.data)}

    def build(out: Path) -> dict:
        data: DatasetDict = instantiate(spec["data"])
        data.save_to_disk(str(out / "data"))
        return {split: len(ds) for split, ds in data.items()}

    artifact = ctx.build("data", "data", spec, build, shared=True)
    return load_from_disk(str(artifact.path / "data")), artifact


def reference_policy(ctx: RunContext) -> Artifact:
    """The SFT reference policy's directory (a built tiny model, or a hub/local model, fine-tuned or not)."""
    policy = ctx.cfg.policy
    data, data_artifact = task_data(ctx)
    if policy.pretrained is None:
        base_spec = {"vocab_size": policy.vocab_size, "architecture": config_data(policy.architecture)}

        def build_base(out: Path) -> dict:
            from mpo.training.sft import build_base_model

            return build_base_model(data["train"]["text"], policy.vocab_size, instantiate(base_spec["architecture"]), out)

        base = ctx.build("base_model", "base_model", base_spec, build_base, [data_artifact], shared=True)
        base_path, deps = str(base.path), [data_artifact, base]
    else:
        base_path, deps = policy.pretrained, [data_artifact]
    if not policy.sft:
        return ctx.build("reference", "reference", {"pretrained": base_path, "sft": False}, _link(base_path), deps,
                         collective=True, shared=True)
    spec = {"base": base_path if policy.pretrained else None, "trainer": config_data(ctx.cfg.trainer.sft), "seed": ctx.cfg.seed}

    def build(out: Path) -> dict:
        from mpo.training.sft import train_sft

        eval_texts = data["eval"]["text"][:256] if "text" in data["eval"].column_names else ()
        return train_sft(base_path, data["train"], out, trl_args=ctx.cfg.trainer.sft, eval_texts=eval_texts,
                         callbacks=ctx.trainer_callbacks("sft"), seed=ctx.cfg.seed)

    return ctx.build("reference", "reference", spec, build, deps, collective=True, shared=True)


def _link(pretrained: str):
    def build(out: Path) -> dict:
        (out / "pretrained.txt").write_text(pretrained)
        return {}

    return build


# ---------------------------------------------------------------- preference pairs
def reference_train_samples(ctx: RunContext, reference: Artifact, n_prompts: int, n: int, name: str,
                            shared: bool = False) -> tuple[Samples, Artifact]:
    """n responses from the reference to each of the first ``n_prompts`` train prompts, seeded by ``name`` (the
    pairs' samples, an RL baseline's normalisation samples); ``shared``: a cost every method's comparison pays."""
    prompts = task_data(ctx)[0]["train"]["prompt"][:n_prompts]
    # training-side samples: the evaluation's decoding, but a fixed batch size (chunks seed the sampler, so
    # eval.batch_size must not change training data) and a seed of their own per use
    offset = 17 + sum(map(ord, name))
    dec = Decoding(**{**decoding(ctx, seed_offset=offset).__dict__, "batch_size": 64})
    return policy_samples(ctx, reference, prompts, n, dec, name, stage="reference_samples", shared=shared)


def policy_samples(ctx: RunContext, policy: Artifact, prompts: list[str], n: int, dec: Decoding, name: str,
                   stage: str, shared: bool = False) -> tuple[Samples, Artifact]:
    """n responses from a policy artifact to each prompt, kept as text and as the sampled token ids: an artifact
    of ``stage`` (every rank samples its share: a collective stage)."""
    spec = {"prompts": list(prompts), "n": n, "decoding": dec.__dict__, "token_ids": True}

    def build(out: Path) -> dict:
        samples = sample(load_policy(ctx, policy), prompts, n, dec, shard=True)
        rows = {"prompt": samples.flat_prompts, "response": samples.responses, "finished": samples.finished,
                "prompt_ids": samples.prompt_ids, "completion_ids": samples.completion_ids}
        Dataset.from_dict(rows).save_to_disk(str(out / "samples"))
        return {"responses": len(samples.responses), "finished": sum(samples.finished) / len(samples.finished)}

    artifact = ctx.build(name, stage, spec, build, [policy], collective=True, shared=shared)
    rows = load_from_disk(str(artifact.path / "samples"))
    return Samples(list(prompts), n, rows["response"], rows["finished"], rows["prompt_ids"], rows["completion_ids"]), artifact


def preference_pairs(ctx: RunContext, objective: str) -> tuple[Dataset, Artifact]:
    """prompt/chosen/rejected pairs for one objective: labelled reference samples, or a dataset's columns."""
    obj = ctx.cfg.task.objectives[objective]
    if obj.pairs.source == "dataset":
        spec = {"dataset": config_data(obj.pairs.dataset)}

        def build_loaded(out: Path) -> dict:
            pairs: Dataset = instantiate(spec["dataset"])
            pairs.save_to_disk(str(out / "pairs"))
            return {"pairs": len(pairs)}

        artifact = ctx.build(f"pairs_{objective}", "pairs", spec, build_loaded, shared=True)
        return load_from_disk(str(artifact.path / "pairs")), artifact
    reference = reference_policy(ctx)
    task = ctx.cfg.task
    samples, sample_artifact = reference_train_samples(
        ctx, reference, task.n_pair_prompts, task.responses_per_prompt, "reference_samples", shared=True)
    spec = {"scorer": config_data(obj.scorer), "pairs": config_data(obj.pairs), "seed": ctx.cfg.seed}

    def build(out: Path) -> dict:
        pairs = label_pairs(samples, ctx.scorers[objective], obj.pairs.labeling, obj.pairs.bt_temperature, ctx.cfg.seed)
        if len(pairs) == 0:
            raise DataError(f"task.objectives.{objective}: its scorer tied every one of the "
                            f"{len(samples.prompts) * (samples.n // 2)} sampled pairs (both responses scored the same), "
                            "so there is no preference to learn: check the scorer, or sample more "
                            "(task.n_pair_prompts, task.responses_per_prompt)")
        pairs.save_to_disk(str(out / "pairs"))
        return {"pairs": len(pairs), "mean_gap": sum(pairs["gap"]) / max(len(pairs), 1)}

    artifact = ctx.build(f"pairs_{objective}", "pairs", spec, build, [sample_artifact], shared=True)
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


def reward_model(ctx: RunContext, objective: str) -> Artifact:
    """A Bradley-Terry reward model for objective k (TRL RewardTrainer) on the reference's backbone."""
    reference = reference_policy(ctx)
    pairs, pairs_artifact = preference_pairs(ctx, objective)
    spec = {"trainer": config_data(ctx.cfg.trainer.reward_model), "seed": ctx.cfg.seed}

    def build(out: Path) -> dict:
        from mpo.training.reward_model import train_reward_model

        split = pairs.train_test_split(test_size=min(0.1, 256 / max(len(pairs), 1)), seed=ctx.cfg.seed)
        return train_reward_model(model_path(reference), pair_columns(split["train"]), out,
                                  trl_args=ctx.cfg.trainer.reward_model, eval_pairs=pair_columns(split["test"]),
                                  callbacks=ctx.trainer_callbacks(f"reward_model_{objective}"), seed=ctx.cfg.seed)

    return ctx.build(f"reward_model_{objective}", "reward_model", spec, build, [reference, pairs_artifact],
                     collective=True)
