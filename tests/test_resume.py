"""A training stage killed after a checkpoint resumes from it on the next build, and ends with the same weights
as an uninterrupted build (CPU, fixed seed): SFT through the artifact store as a run does it, and the reward
model, DPO and RL stages on their own."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import compose
from datasets import Dataset
from safetensors.torch import load_file
from transformers import TrainerCallback

from mpo.config.load import load_config
from mpo.stages.context import RunContext, model_path
from mpo.stages.pipeline import reference_policy
from mpo.store.artifacts import ArtifactStore
from mpo.training.common import last_checkpoint


class Interrupted(RuntimeError):
    pass


class Steps(TrainerCallback):
    """Counts the steps a trainer takes; raises (a crash mid-stage) once it passes ``stop_after``."""

    def __init__(self, stop_after: int | None = None):
        self.stop_after, self.steps = stop_after, []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)
        if self.stop_after is not None and state.global_step > self.stop_after:
            raise Interrupted(f"killed at step {state.global_step}")


class StageCallbacks:
    """The tracker slot of a RunContext, handing a stage our callback instead of W&B's."""

    def __init__(self, callback):
        self.cb = callback

    def callback(self, stage):
        return self.cb

    def log_stage(self, stage, metrics):
        pass


def weights(directory: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(directory) / "model.safetensors"))


def assert_same_weights(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    config = load_config(compose(["experiment=smoke", "logger=none"], root))  # sft: 40 steps, save_steps 10
    ctx = RunContext(config, ArtifactStore(root / "uninterrupted"))
    return SimpleNamespace(root=root, config=config, reference=reference_policy(ctx))


def test_a_killed_sft_stage_resumes_to_the_same_weights(smoke):
    store = ArtifactStore(smoke.root / "interrupted")
    with pytest.raises(Interrupted):
        reference_policy(RunContext(smoke.config, store, StageCallbacks(Steps(stop_after=25))))
    (build_dir,) = (store.root / "reference").glob(".build-*")
    assert Path(last_checkpoint(build_dir / "_trainer")).name == "checkpoint-20"
    steps = Steps()
    resumed = reference_policy(RunContext(smoke.config, store, StageCallbacks(steps)))
    assert steps.steps == list(range(21, 41))  # resumed at step 20, not restarted
    assert resumed.digest == smoke.reference.digest
    assert_same_weights(model_path(resumed), model_path(smoke.reference))
    assert not build_dir.exists()


def pairs(n: int = 64) -> Dataset:
    prompts = [f"The film {i % 7} was" for i in range(n)]
    return Dataset.from_dict({"prompt": prompts, "chosen": [" great and moving."] * n,
                              "rejected": [" dull, long and bad in every way."] * n})


def reward_stage(path, out, callbacks, trl_args):
    from mpo.training.reward_model import train_reward_model

    return train_reward_model(path, pairs(), out, trl_args=trl_args, callbacks=callbacks)


def dpo_stage(path, out, callbacks, trl_args):
    from mpo.training.dpo import train_dpo

    return train_dpo(path, pairs(), out, beta=0.1, trl_args={**trl_args, "precompute_ref_log_probs": True},
                     callbacks=callbacks)


def rl_stage(path, out, callbacks, trl_args):
    from mpo.training.rl import train_rl

    def shorter(prompts, responses):
        return [-len(r) / 20 for r in responses]

    return train_rl(path, [f"The film {i} was" for i in range(16)], [shorter], out, beta=0.1,
                    trl_args={**trl_args, "num_generations": 4, "max_completion_length": 8}, callbacks=callbacks)


@pytest.mark.parametrize("stage", [reward_stage, dpo_stage, rl_stage], ids=["reward_model", "dpo", "rl"])
def test_a_killed_stage_resumes_to_the_same_weights(smoke, tmp_path, stage):
    args = {"max_steps": 4, "save_steps": 2, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
            "logging_steps": 1}
    path = model_path(smoke.reference)
    stage(path, tmp_path / "whole", [], args)
    with pytest.raises(Interrupted):
        stage(path, tmp_path / "killed", [Steps(stop_after=2)], args)  # dies in step 3, after checkpoint-2
    steps = Steps()
    stage(path, tmp_path / "killed", [steps], args)  # the store would hand the same build dir back
    assert steps.steps == [3, 4]
    assert_same_weights(tmp_path / "whole", tmp_path / "killed")
