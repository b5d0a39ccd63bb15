from pathlib import Path

import pytest

from mpo.config.load import load_config
from mpo.config.schema import ConfigError, MPOMethod
from tests.conftest import CONF_DIR

GROUPS = {g: sorted(p.stem for p in (Path(CONF_DIR) / g).glob("*.yaml") if not p.stem.startswith("_"))
          for g in ("task", "policy", "method", "trainer", "logger")}
NEEDS = {"single": ["method.objective=sentiment"], "single_2": ["task=reviews3"]}


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_preset_composes_and_validates(compose_cfg, group, option):
    extra = NEEDS.get(option, []) if group == "method" else []
    if group == "task" and option == "hh_rlhf":
        extra = ["method=reference"]
    cfg = load_config(compose_cfg(f"{group}={option}", *extra))
    assert getattr(cfg, group) is not None


def test_every_experiment_preset_composes(compose_cfg):
    for path in sorted((Path(CONF_DIR) / "experiment").glob("*.yaml")):
        load_config(compose_cfg(f"experiment={path.stem}"))


def test_groups_exist():
    assert {"reviews", "reviews3", "imdb", "hh_rlhf"} <= set(GROUPS["task"])
    assert {"tiny", "gpt2", "qwen2.5-0.5b", "llama-3.2-3b"} <= set(GROUPS["policy"])
    assert {"reference", "single", "mpo", "morlhf", "maxmin_rlhf", "reward_soups", "mixed_po"} <= set(GROUPS["method"])


def test_method_node_is_typed(compose_cfg):
    cfg = load_config(compose_cfg("method=mpo", "method.weights=[0.25,0.75]"))
    assert isinstance(cfg.method, MPOMethod) and cfg.method.weights == [0.25, 0.75]


@pytest.mark.parametrize("overrides,message", [
    (["method=mpo", "method.weights=[0.5,0.6]"], "sums to 1.1"),
    (["method=mpo", "method.weights=[1.5,-0.5]"], "negative"),
    (["method=mpo", "method.weights=[0.2,0.3,0.5]"], "3 weights but there are 2 objectives"),
    (["method=single", "method.objective=humor"], "method.objective='humor' is not an objective"),
    (["method=mpo", "method.drop=length"], "method.drop='length'"),
    (["task.beta=0"], "task.beta=0"),
    (["method=morlhf", "method.rl.algorithm=ppo"], "rl.algorithm='ppo'"),
    (["logger.mode=sometimes"], "logger.mode='sometimes'"),
    (["task.objectives.sentiment.pairs.labeling=coinflip"], "pairs.labeling='coinflip'"),
    (["method=mpo", "method.criterion=winrate"], "method.criterion='winrate'"),
    (["method=mpo", "method.criterion=win_rate", "method.solver=bsmd"], "drop method.solver=bsmd"),
    (["method=mpo", "method.target=token"], "add method.decoding=token"),
    (["method=mpo_token", "method.estimator.round2_samples=4"], "round2_samples=0"),
    (["method=mpo_token", "method.token_game.n_prompts=512"], "token_game.n_prompts=512"),
    (["method=mpo_token", "method.token_game.estimator=exact"], "token_game.estimator='exact'"),
    (["method=mpo_defensive", "method.defensive_share=1.5"], "method.defensive_share=1.5: the share"),
    (["method=mpo_defensive", "method.decoding=token"], "with method.decoding=sequence"),
    (["method=mpo_defensive", "eval.temperature=0.7"], "eval.temperature=0.7"),
    (["method=maxmin_rlhf", "method.min_of=mean"], "method.min_of='mean'"),
])
def test_bad_values_fail_naming_the_key(compose_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(compose_cfg(*overrides))


def test_unknown_key_and_wrong_type_fail_at_composition(compose_cfg):
    with pytest.raises(Exception, match="weightz"):
        compose_cfg("method=mpo", "method.weightz=[1]")
    with pytest.raises(Exception, match="beta"):
        compose_cfg("task.beta=strong")
    with pytest.raises(Exception, match="bsmd.steps"):
        compose_cfg("method=mpo", "method.bsmd.steps=many")


def test_single_requires_objective(compose_cfg):
    with pytest.raises(Exception, match="objective"):
        load_config(compose_cfg("method=single"))


def test_third_objective_by_config_alone(compose_cfg):
    cfg = load_config(compose_cfg("task=reviews3"))
    assert list(cfg.task.objectives) == ["sentiment", "conciseness", "specificity"]
    cfg = load_config(compose_cfg("+task.objectives.film={scorer:{_target_:mpo.scorers.lexicon.Lexicon,words:[film]}}"))
    assert cfg.task.objectives["film"].pairs.source == "sampled"
    with pytest.raises(ConfigError, match="task.objectives.film needs a scorer"):
        load_config(compose_cfg("+task.objectives.film={pairs:{source:sampled}}"))
    with pytest.raises(ConfigError, match="sourc"):
        load_config(compose_cfg("+task.objectives.film={scorer:{_target_:x.y},pairs:{sourc:sampled}}"))


def test_single_by_position(compose_cfg):
    assert load_config(compose_cfg("method=single_1")).method.objective == "conciseness"
    with pytest.raises(ConfigError, match="has 2 objectives"):
        load_config(compose_cfg("method=single_2"))


def test_a_single_run_dir_names_task_and_method(tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["task=reviews3", "method=mpo", f"paths.root={tmp_path}"],
                      return_hydra_config=True)
        run_dir = Path(cfg.hydra.run.dir)
    assert run_dir.parent.parent == tmp_path / "runs" and run_dir.name.endswith("-reviews3-mpo")


@pytest.mark.parametrize("threads,jobs,cpus,expected", [(0, 1, 2, 0), (0, 2, 2, 1), (0, 2, 16, 8), (0, 3, 2, 1),
                                                         (4, 2, 16, 4)])
def test_parallel_jobs_split_the_cores(threads, jobs, cpus, expected):
    from mpo.experiment import torch_threads

    assert torch_threads(threads, jobs, cpus) == expected
