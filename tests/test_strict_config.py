"""Strict configs: unknown keys refused wherever they come from (a `+` override, a trainer keyword, a `_target_`'s
argument), every config mistake told by `python -m mpo.run` as one line naming the key and the fix, with no
traceback and before torch is imported; experiment presets apply whole, on any task."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpo.config.load import load_config
from mpo.infra.errors import ConfigError, DataError, MissingInputError

ROOT = Path(__file__).resolve().parents[1]


def cli(tmp_path: Path, *overrides: str, block_torch: bool = True) -> subprocess.CompletedProcess:
    """`python -m mpo.run ...` as a user types it. With ``block_torch``, importing torch (or transformers, which
    imports it) fails: a check that needed it would not get to say its line."""
    env = {**os.environ, "MPO_OUTPUTS": str(tmp_path / "outputs")}
    env.pop("HYDRA_FULL_ERROR", None)
    if block_torch:
        fake = tmp_path / "no_torch" / "torch"
        fake.mkdir(parents=True, exist_ok=True)
        (fake / "__init__.py").write_text("raise ImportError('torch was imported before the config was checked')\n")
        env["PYTHONPATH"] = str(fake.parent)
    return subprocess.run([sys.executable, "-m", "mpo.run", *overrides, "logger=none"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("overrides,named", [
    (["method=mpo", "+method.wieghts=[0.5,0.5]"], "method.wieghts: unknown key (did you mean 'weights'?)"),
    (["+task.bta=0.5"], "task.bta: unknown key (did you mean 'beta'?)"),
    (["method=mpo", "method.wieghts=[0.5,0.5]"], "method.wieghts: unknown key (did you mean 'weights'?)"),
    (["trainer.sft.learning_rat=0.1"], "trainer.sft.learning_rat: not a setting of SFTConfig (did you mean "
                                       "'learning_rate'?)"),
    (["+trainer.dpo.max_stepz=3"], "trainer.dpo.max_stepz: not a setting of TRL's DPOConfig (did you mean "
                                   "'max_steps'?)"),
    (["method=morlhf", "method.weights=[0.5,0.6]"], "method.weights=[0.5, 0.6] sums to 1.1"),
    (["task.beta=0"], "task.beta=0.0 must be > 0"),
    (["task.beta=strong"], "task.beta=strong: Value 'strong'"),
    (["eval.n_prompts=0"], "eval.n_prompts=0: must be at least 1"),
    (["method=mpo", "method.weights=[1.0,0.0]", "method.drop=sentiment"], "puts all the weight on method.drop"),
    (["policy=gpt2", "policy.pretrained=./no/such/model"], "policy.pretrained=./no/such/model: no such directory"),
    (["method=mpoo"], "method=mpoo: no such method preset (did you mean 'mpo'?)"),
    (["method=single"], "method.objective: required but not set; add method.objective=<value>"),
])
def test_config_mistakes_are_one_line_without_traceback_before_torch(tmp_path, overrides, named):
    proc = cli(tmp_path, *overrides)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {lines[0].removeprefix('error: ')}"] and named in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and "HYDRA_FULL_ERROR" not in proc.stderr
    assert not (tmp_path / "outputs" / "artifacts").exists()  # nothing was built


def test_a_bug_keeps_its_traceback(tmp_path):
    """Not a user's mistake (torch missing here stands for any bug): the traceback stays, exit code 1."""
    proc = cli(tmp_path, "experiment=smoke")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "torch was imported" in proc.stderr


def test_plus_prefix_cannot_add_keys_to_typed_nodes(compose_cfg):
    for override, key in (("+foo=1", "foo: unknown key"), ("+eval.n_prompt=3", "eval.n_prompt: unknown key"),
                          ("+method.bsmd.stepz=3", "method.bsmd.stepz: unknown key")):
        with pytest.raises(ConfigError, match=key):
            load_config(compose_cfg("method=mpo", override))


def test_target_arguments_and_trainer_keywords_are_checked(compose_cfg):
    with pytest.raises(ConfigError, match=r"task.data.nn: mpo.data.reviews.build_review_dataset takes no argument 'nn' "
                                          r"\(did you mean 'n'\?\)"):
        load_config(compose_cfg("+task.data.nn=3"))
    with pytest.raises(ConfigError, match="task.objectives.conciseness.scorer.scael: .*Conciseness takes no argument"):
        load_config(compose_cfg("+task.objectives.conciseness.scorer.scael=3"))
    with pytest.raises(ConfigError, match="task.data._target_=mpo.data.reviews.nope: module mpo.data.reviews defines"):
        load_config(compose_cfg("task.data._target_=mpo.data.reviews.nope"))
    with pytest.raises(ConfigError, match="task.objectives.x.scorer._target_=mypkg.score: no module mypkg can be"):
        load_config(compose_cfg("+task.objectives.x={scorer:{_target_:mypkg.score}}"))
    # GRPO and RLOO take different keywords: checked against the algorithm the method uses
    with pytest.raises(ConfigError, match="trainer.rl.scale_rewards: not a setting of TRL's RLOOConfig"):
        load_config(compose_cfg("method=morlhf", "method.rl.algorithm=rloo", "+trainer.rl.scale_rewards=none"))
    grpo = load_config(compose_cfg("method=morlhf", "method.rl.algorithm=grpo", "+trainer.rl.scale_rewards=none"))
    assert grpo.trainer.rl["scale_rewards"] == "none"
    assert load_config(compose_cfg("+trainer.sft.weight_decay=0.1")).trainer.sft["weight_decay"] == 0.1


def test_local_inputs_are_checked_at_composition(compose_cfg, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match=f"task.data.source={empty}: the file is empty"):
        load_config(compose_cfg("task=imdb", f"task.data.source={empty}"))
    with pytest.raises(MissingInputError, match="task.data.source=./nowhere.jsonl: no such file"):
        load_config(compose_cfg("task=imdb", "task.data.source=./nowhere.jsonl"))
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(DataError, match=f"policy.pretrained={model} has no config.json"):
        load_config(compose_cfg("policy=gpt2", f"policy.pretrained={model}"))
    (model / "config.json").write_text("{not json")
    with pytest.raises(DataError, match="config.json is not valid JSON"):
        load_config(compose_cfg("policy=gpt2", f"policy.pretrained={model}"))
    (model / "config.json").write_text("{}")
    with pytest.raises(DataError, match="has no weights"):
        load_config(compose_cfg("policy=gpt2", f"policy.pretrained={model}"))
    with pytest.raises(MissingInputError, match="task.objectives.sentiment.scorer.model=/no/such/classifier"):
        load_config(compose_cfg("task=imdb", "task.objectives.sentiment.scorer.model=/no/such/classifier"))
    assert load_config(compose_cfg("policy=gpt2")).policy.pretrained == "openai-community/gpt2"  # a hub id passes


def test_experiment_presets_apply_whole_on_any_task(compose_cfg):
    smoke = load_config(compose_cfg("experiment=smoke"))
    assert (smoke.eval.n_prompts, smoke.eval.samples_per_prompt, smoke.threads) == (12, 2, 1)  # not config.yaml's
    assert smoke.task.data["n"] == 400 and smoke.policy.architecture["n_embd"] == 32
    imdb = load_config(compose_cfg("experiment=smoke", "task=imdb"))
    assert imdb.task.name == "imdb" and "n" not in imdb.task.data
    assert (imdb.task.data["n_train"], imdb.task.data["n_eval"], imdb.eval.n_prompts) == (400, 40, 12)
    hh = load_config(compose_cfg("experiment=smoke", "task=hh_rlhf", "method=reference"))
    assert hh.task.objectives["helpful"].pairs.dataset["n"] == 400
    gpt2 = load_config(compose_cfg("experiment=smoke", "policy=gpt2"))
    assert gpt2.policy.architecture is None and gpt2.trainer.sft["max_steps"] == 40
    paper = load_config(compose_cfg("experiment=imdb_paper"))
    assert paper.eval.n_prompts == 256 and paper.policy.name == "llama-3.2-3b" and paper.policy.sft


def test_a_truncated_model_file_is_named_at_composition(compose_cfg, tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    model = tmp_path / "model"
    GPT2LMHeadModel(GPT2Config(vocab_size=16, n_embd=8, n_layer=1, n_head=2, n_positions=8)).save_pretrained(model)
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE())).save_pretrained(model)
    assert load_config(compose_cfg("policy=gpt2", f"policy.pretrained={model}")).policy.pretrained == str(model)
    weights = model / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size - 100)
    with pytest.raises(DataError, match=f"policy.pretrained={model}: model.safetensors is truncated"):
        load_config(compose_cfg("policy=gpt2", f"policy.pretrained={model}"))
