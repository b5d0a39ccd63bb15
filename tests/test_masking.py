"""Secrets are masked by key and by value, recursively and inside override text (mpo/infra/masking.py): in
results.json overrides, `.hydra/`, artifact manifests, the W&B config and what `--help` and `--cfg` print;
the names and digests a reader needs (token_ids, max_new_tokens, commits, sha256 digests) stay visible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose
from omegaconf import OmegaConf

from mpo.infra.masking import (MASK, is_secret_key, mask, mask_override, mask_text, mask_values, masked_printing,
                               prints_only)
from mpo.store.artifacts import ArtifactStore

ROOT = Path(__file__).resolve().parents[1]
HF = "hf_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z"  # 34 letters and digits, as the Hub issues them
OPENAI = "sk-proj-" + "Ab3De5Fg7Hj9Kl1Mn3Pq5Rs7"
WANDB = "0123456789abcdef0123456789abcdef01234567"  # 40 lowercase hex: a W&B API key, or a git commit
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize("key", ["hf_token", "api_key", "wandb_api_key", "hfToken", "client_secret", "db_password",
                                 "apikey", "API_KEY", "AccessToken", "hub_token", "credentials"])
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["token_ids", "max_new_tokens", "tokenizer", "keywords", "api_key_file", "lr", ""])
def test_keys_that_are_not_secret(key):
    assert not is_secret_key(key)


@pytest.mark.parametrize("text,masked", [
    ("https://user:pw@host.org/x?y=1", "https://***@host.org/x?y=1"),
    ("git clone https://ghp_token@github.com/a/b", "git clone https://***@github.com/a/b"),
    ("postgres://db:s3cret@10.0.0.1:5432/runs", "postgres://***@10.0.0.1:5432/runs"),
    ("Authorization: Bearer abc123DEF456ghi789", "Authorization: Bearer ***"),
    (f"key {OPENAI} here", "key sk-*** here"),
    ("sk-" + "a1" * 24, "sk-***"),
    (HF, "hf_***"),
    (f"repo={HF},", "repo=hf_***,"),
    ("ghp_" + "A1b2" * 9, "ghp_***"),
])
def test_secret_values_are_masked_whatever_the_key(text, masked):
    assert mask_values(text) == masked
    assert mask({"note": text}) == {"note": masked}


@pytest.mark.parametrize("text", [
    "https://huggingface.co/gpt2", "https://host/path?email=a@b.org", "user@host.org", "hf_token", "sk-learn",
    "sk-some-long-descriptive-name", "hf_hub_download", "task-" + "a1" * 20, "Bearer tokens are masked",
    f"prompts_sha256 {SHA256}", "digest 0123456789abcdef", f"commit {WANDB} in prose",
])
def test_ordinary_values_stay_visible(text):
    assert mask_values(text) == text
    assert mask({"note": text}) == {"note": text}


def test_a_lone_40_hex_value_is_masked_unless_its_key_names_a_hash():
    assert mask({"wandb": WANDB, "login": [WANDB], "local": f"local-{WANDB}"}) == {"wandb": MASK, "login": [MASK],
                                                                                    "local": MASK}
    visible = {"commit": WANDB, "git_sha": WANDB, "revision": WANDB, "commits": [WANDB], "digest": WANDB,
               "sha256": SHA256, "fingerprint": SHA256, "artifact": "0123456789abcdef", "upper": WANDB.upper()}
    assert mask(visible) == visible
    assert mask_override(f"+policy.revision={WANDB}") == f"+policy.revision={WANDB}"
    assert mask_override(f"+logger.login={WANDB}") == "+logger.login=***"
    assert mask_text(f"login: {WANDB}, commit: {WANDB}") == f"login: ***, commit: {WANDB}"


def test_mask_goes_through_nested_dicts_and_lists():
    config = {"data": {"token_ids": ["input_ids", "labels"], "url": "https://u:pw@h/x"},
              "scorers": [{"api_key": "k", "kwargs": {"headers": ["Bearer abc123def456"]}}, {"name": "lexicon"}],
              "max_new_tokens": 16, "hf_token": {"nested": "whole"}, "password": None, "paths": (Path("/x"),)}
    assert mask(config) == {
        "data": {"token_ids": ["input_ids", "labels"], "url": "https://***@h/x"},
        "scorers": [{"api_key": MASK, "kwargs": {"headers": ["Bearer ***"]}}, {"name": "lexicon"}],
        "max_new_tokens": 16, "hf_token": MASK, "password": None, "paths": ["/x"]}


@pytest.mark.parametrize("override,masked", [
    ("+task.objectives.X={scorer:{_target_:mpo.scorers.lexicon.Lexicon,api_key:abc}}",
     "+task.objectives.X={scorer:{_target_:mpo.scorers.lexicon.Lexicon,api_key:***}}"),
    ("+x={scorer: {api_key: abc, words: [film]}}", "+x={scorer: {api_key: ***, words: [film]}}"),
    ("+x={api_key:{a:1,b:[2,3]},c:3}", "+x={api_key:***,c:3}"),
    ("+x={password:'a,b c',n:1}", "+x={password:***,n:1}"),
    ("+x={url:'https://u:pw@h/x',hfToken:\"q\"}", "+x={url:'https://***@h/x',hfToken:***}"),
    ("+data.urls=[https://u:pw@h/x,https://h/y]", "+data.urls=[https://***@h/x,https://h/y]"),
    ("+data.token_ids=[input_ids,labels]", "+data.token_ids=[input_ids,labels]"),
    ("+trainer.sft.hub_token=a,b", "+trainer.sft.hub_token=***"),
    ("+task.data.token.value=x", "+task.data.token.value=***"),
    (f"+policy.headers={{auth:'Bearer abc123def456'}}", "+policy.headers={auth:'Bearer ***'}"),
    # as a sweep's job records them: Hydra's BasicSweeper escapes ``:``, ``,`` and blanks of a plain value
    ("+trainer.sft.hub_model_id=https\\://u\\:pw@h/x", "+trainer.sft.hub_model_id=https\\://***@h/x"),
    ("+data.url=https\\://u\\:p\\,w@h/x", "+data.url=https\\://***@h/x"),
    ("+x.auth=Bearer\\ abc123def456", "+x.auth=Bearer\\ ***"),
    ("+x={note:a\\,b,api_key:c\\,d}", "+x={note:a\\,b,api_key:***}"),
    ("method=mpo", "method=mpo"),
    ("task.max_new_tokens=8", "task.max_new_tokens=8"),
])
def test_overrides_are_masked_inside_their_values(override, masked):
    assert mask_override(override) == masked
    assert mask_override(masked) == masked  # masking twice changes nothing
    assert mask_text(override) == masked  # sys.argv, masked for W&B's args


def test_free_text_is_masked_entry_by_entry():
    assert mask_text("#0 : method=mpo +x.api_key=abc seed=1") == "#0 : method=mpo +x.api_key=*** seed=1"
    assert mask_text("a=1,+x.hub_token=s,b=2") == "a=1,+x.hub_token=***,b=2"  # Hydra's override_dirname
    assert mask_text("+x={scorer:{api_key:abc}},seed=1") == "+x={scorer:{api_key:***}},seed=1"
    assert mask_text("loading ${oc.env:HF_HOME} for tokenizer: gpt2") == "loading ${oc.env:HF_HOME} for tokenizer: gpt2"


def test_the_recorded_config_masks_a_secret_inside_a_dict_valued_override(tmp_path):
    """What `record_job` writes to `.hydra/config.yaml`: mask() of the composed config."""
    cfg = compose(["+task.objectives.X={scorer:{_target_:mpo.scorers.lexicon.Lexicon,words:[x],api_key:abc,"
                   "url:'https://u:pw@h/x'}}"], tmp_path)
    scorer = mask(OmegaConf.to_container(cfg, resolve=False))["task"]["objectives"]["X"]["scorer"]
    assert scorer == {"_target_": "mpo.scorers.lexicon.Lexicon", "words": ["x"], "api_key": MASK,
                      "url": "https://***@h/x"}


def test_an_artifact_manifest_holds_no_secret(tmp_path):
    spec = {"url": "https://u:pw@h/x", "nested": [{"api_key": "k", "token_ids": ["input_ids"]}], "note": HF}
    artifact = ArtifactStore(tmp_path).get_or_build("data", spec, lambda out: (out / "f").write_text("x") and None)
    text = (artifact.path / "manifest.json").read_text()
    assert "pw@" not in text and '"k"' not in text and HF not in text
    assert json.loads(text)["spec"] == {"url": "https://***@h/x", "nested": [{"api_key": MASK, "token_ids":
                                        ["input_ids"]}], "note": "hf_***"}
    again = ArtifactStore(tmp_path).get_or_build("data", spec, lambda out: pytest.fail("rebuilt"))
    assert again.reused  # the digest is the spec's, not the masked copy's


@pytest.mark.parametrize("argv,prints", [
    (["--cfg", "job"], True), (["--cfg=hydra"], True), (["-cjob"], True), (["-c", "all"], True),
    (["--help"], True), (["-h"], True), (["--info", "config"], True), (["--hydra-help"], True),
    (["-cd", "sweeps", "-cn", "compare_methods"], False), (["-m", "method=mpo"], False), ([], False),
])
def test_which_commands_only_print(argv, prints):
    assert prints_only(["mpo.run", *argv]) is prints


def test_masked_printing_masks_yaml_and_stdout_then_restores_both(capsys):
    cfg = OmegaConf.create({"api_key": "abc", "sub": {"hf_token": {"deep": "x"}, "url": "https://u:pw@h/"}})
    stdout = sys.stdout
    with masked_printing():
        text = OmegaConf.to_yaml(cfg)
        print("https://u:p", end="")
        print("w@h/x")
    assert "abc" not in text and "deep" not in text and "pw@" not in text and text.count(MASK) == 3
    assert capsys.readouterr().out == "https://***@h/x\n"  # a value split across writes is still caught
    assert sys.stdout is stdout and "abc" in OmegaConf.to_yaml(cfg)


def mpo_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPO_OUTPUTS": str(tmp_path / "outputs")}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "mpo.run", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


SECRET_OVERRIDES = ("+task.objectives.X={scorer:{_target_:mpo.scorers.lexicon.Lexicon,words:[x],api_key:SECRETVALUE}}",
                    "+trainer.sft.hub_token=SECRETVALUE", "+trainer.sft.hub_model_id=https://u:SECRETVALUE@h/x")


@pytest.mark.parametrize("flags", [["--cfg", "job"], ["--cfg", "hydra"], ["--cfg", "all"], ["--help"],
                                   ["--info", "config"]])
def test_what_hydra_prints_is_masked(tmp_path, flags):
    proc = mpo_run(tmp_path, *flags, *SECRET_OVERRIDES)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SECRETVALUE" not in proc.stdout + proc.stderr
    assert MASK in proc.stdout
    if flags[-1] != "hydra":
        assert "hub_token: '***'" in proc.stdout or "hub_token: ***" in proc.stdout
        assert "https://***@h/x" in proc.stdout
    else:
        assert "+trainer.sft.hub_token=***" in proc.stdout  # hydra.overrides.task


@pytest.mark.parametrize("package,printed", [
    (["-p", "trainer.sft.hub_model_id"], "https://***@h/x"),  # by value
    (["-p", "trainer.sft.hub_token"], "***"),  # the bare value of a secret-like key: no key left to mask it by
    (["--package=task.objectives.X.scorer.api_key"], "***"),
])
def test_a_single_printed_value_is_masked(tmp_path, package, printed):
    proc = mpo_run(tmp_path, "--cfg", "job", *package, *SECRET_OVERRIDES)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == printed
