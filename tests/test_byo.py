"""docs/byo.md works as written: its files (the fenced blocks that start with `# file: PATH`) and its example
rows are written into a temporary directory, with a tiny locally built model standing in for `byo/my-model`;
every `python -m mpo.run` command of the page composes with Hydra's compose API and passes the project's config
checks; the pairs loader reads the pairs file into prompt/chosen/rejected; the function scorer is built and
checked as a run builds it; and the page's first command runs end to end (`method=reference experiment=smoke`:
SFT, sampling, both scorers, results.json)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from test_readme_commands import PREFIX, hydra_arguments, jobs, readme_commands, shell_problems

from mpo.config.load import load_config

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "byo.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", PAGE, flags=re.S | re.M)
FILES = {m[1]: body for _, body in BLOCKS if (m := re.match(r"# file: (\S+)\n", body))}
# the example rows of the two data files: the json blocks, in the page's order (prompts, then pairs)
ROWS = [[json.loads(line) for line in body.splitlines() if line.strip()] for lang, body in BLOCKS if lang == "json"]
COMMANDS = [c for c in readme_commands(PAGE) if c.startswith(PREFIX + " ")]  # not the bare name in prose


@pytest.fixture(scope="module")
def byo(tmp_path_factory) -> Path:
    """The launch directory of the walkthrough: byo/ and my_scorers.py, as the page lays them out."""
    from transformers import GPT2Config

    from mpo.data.reviews import build_review_dataset
    from mpo.training.sft import build_base_model

    root = tmp_path_factory.mktemp("launch")
    for name, body in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body)
    prompts, pairs = ROWS
    reviews = build_review_dataset(n=300, seed=0)["train"]["text"]
    (root / "byo" / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*prompts, *({"text": t} for t in reviews)]))
    (root / "byo" / "politeness_pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    texts = [r["text"] for r in prompts] + list(reviews)
    build_base_model(texts, 384, GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=96), root / "byo" / "my-model")
    return root


def test_the_page_has_its_files_and_commands():
    assert set(FILES) == {"byo/policy/my_model.yaml", "byo/task/my_task.yaml", "my_scorers.py"}
    assert len(ROWS) == 2 and all(ROWS)
    assert len(COMMANDS) >= 5 and COMMANDS[0].split("#")[0].rstrip().endswith("method=reference experiment=smoke")


def composed(byo: Path, command: str) -> list:
    """Every job of ``command`` composed (as `mpo.run` launched from ``byo`` would) and checked."""
    assert not shell_problems(command), command
    config_dir, config_name, overrides = hydra_arguments(command)
    assert config_dir == ROOT / "byo", command  # `--config-dir byo`: the walkthrough's folder, on the search path
    base = [f"paths.root={byo}/outputs", f"paths.output_dir={byo}/outputs/run", f"hydra.searchpath=[file://{byo / 'byo'}]"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return [load_config(compose(config_name, overrides=[*base, *job])) for job in jobs(config_name, base, overrides)]


@pytest.mark.parametrize("command", COMMANDS, ids=[c.split(" #")[0].strip()[len(PREFIX) + 1:] for c in COMMANDS])
def test_every_command_composes_and_validates(byo, command, monkeypatch):
    monkeypatch.chdir(byo)  # relative paths (byo/reviews.jsonl, byo/my-model) are read from the launch directory
    monkeypatch.syspath_prepend(str(byo))  # as `python -m` puts it on sys.path: my_scorers is importable
    configs = composed(byo, command)
    assert configs and all(c.task.name == "my_task" and list(c.task.objectives) == ["brevity", "politeness"]
                           for c in configs)
    assert all(c.policy.pretrained == "byo/my-model" for c in configs)


def test_the_pairs_file_and_the_scorer_are_what_a_run_reads(byo, monkeypatch):
    from mpo.scorers.checked import build_scorer
    from mpo.stages.context import config_data

    monkeypatch.chdir(byo)
    monkeypatch.syspath_prepend(str(byo))
    (config,) = composed(byo, f"{PREFIX} --config-dir byo task=my_task policy=my_model method=mpo")
    pairs = instantiate(config_data(config.task.objectives["politeness"].pairs.dataset))
    assert pairs.column_names == ["prompt", "chosen", "rejected"] and pairs.to_list() == ROWS[1]
    politeness = build_scorer("politeness", config_data(config.task.objectives["politeness"].scorer))
    assert politeness(pairs["prompt"], pairs["chosen"]) > politeness(pairs["prompt"], pairs["rejected"])
    brevity = build_scorer("brevity", config_data(config.task.objectives["brevity"].scorer))
    assert brevity(["a", "b", "c"], ["", "one two three", " ".join(["w"] * 20)]) == [1.0, 0.75, 0.0]


def test_the_first_command_runs_end_to_end(byo):
    argv = COMMANDS[0].split("#")[0].split()[3:]  # after `python -m mpo.run`
    env = {**os.environ, "MPO_OUTPUTS": str(byo / "outputs"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "mpo.run", *argv, "logger=none"], cwd=byo, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (byo / "outputs" / "runs").glob("*/*/results.json")
    results = json.loads(path.read_text())
    assert (results["task"], results["policy"], results["method"]) == ("my_task", "my_model", "reference")
    assert list(results["reward"]) == ["brevity", "politeness"]
    assert 0 <= results["reward"]["brevity"] <= 1 and 0 <= results["reward"]["politeness"] <= 1
    assert not results["cost"]["reference"]["reused"]  # SFT on byo/reviews.jsonl made the reference
