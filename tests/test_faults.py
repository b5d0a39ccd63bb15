"""Every fault a hostile user reached is one line naming the problem and the fix, exit code 2, no traceback:
an override into a null group, too few proposal samples, a seed numpy refuses, a device the machine lacks,
float16 on CPU, one eval prompt, a store or run dir that cannot be written, non-UTF-8 data, a pairs file with
no usable pair; Ctrl-C is one line saying what was kept, with the shell's code for an interrupt. (Stale
artifacts, kill -9 and a lost rank are the soak's and `test_resume`'s; unlike runs in compare, `test_compare`'s.)"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpo.data.hub import load_pairs
from mpo.data.local import check_data_source
from mpo.infra.errors import DataError, filesystem_error, user_error

ROOT = Path(__file__).resolve().parents[1]


def cli_env(tmp_path: Path) -> dict:
    env = {**os.environ, "MPO_OUTPUTS": str(tmp_path / "outputs"), "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpo.run", "experiment=smoke", "logger=none", *overrides],
                          cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True, timeout=180)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


@pytest.mark.parametrize("overrides,named", [
    (["policy.lora.r=4"], "policy.lora is null in this run (no policy/lora preset)"),
    (["method=mpo", "method.estimator.samples_per_prompt=2"], "needs at least 3 (K + 1 = 3)"),
    (["seed=-1"], "seed=-1: must lie in [0, 2**32 - 1]"),
    (["seed=4294967296"], "seed=4294967296: must lie in [0, 2**32 - 1]"),
    (["device=tpu"], "device='tpu': not a device mpo can run on"),
    (["eval.n_prompts=1"], "eval.n_prompts=1: the confidence intervals resample prompts"),
])
def test_config_faults_are_one_line(tmp_path, overrides, named):
    line = one_error_line(cli(tmp_path, *overrides))
    assert named in line
    assert not (tmp_path / "outputs" / "artifacts").exists()  # refused before anything was built


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is visible: cuda and float16 are fine")
@pytest.mark.parametrize("overrides,named", [
    (["device=cuda"], "device=cuda: no CUDA GPU is visible to torch"),
    (["device=cuda:1"], "device=cuda:1: no CUDA GPU is visible to torch"),
    (["policy.dtype=float16"], "float16 training on CPU turns the weights to NaN"),
])
def test_device_faults_are_one_line_before_any_build(tmp_path, overrides, named):
    line = one_error_line(cli(tmp_path, *overrides))
    assert named in line and ("device=auto" in line or "policy.dtype=bfloat16" in line)
    assert not (tmp_path / "outputs" / "artifacts").exists()


def test_a_file_where_the_outputs_go_is_one_line(tmp_path):
    (tmp_path / "outputs").write_text("not a directory")
    line = one_error_line(cli(tmp_path))
    assert f"cannot write {tmp_path / 'outputs'}" in line and "a file stands where a directory must be" in line
    assert "paths.root=<dir>" in line
    assert (tmp_path / "outputs").read_text() == "not a directory"  # nothing of the user's was touched


@pytest.mark.parametrize("code,said", [(errno.ENOSPC, "the disk is full"),
                                       (errno.EROFS, "the file system is read-only"),
                                       (errno.EACCES, "permission denied")])
def test_filesystem_errors_say_what_and_where_even_when_wrapped(code, said):
    cause = OSError(code, os.strerror(code), "/store/artifacts/reference")
    try:
        try:
            raise cause
        except OSError as err:
            raise RuntimeError("Error in call to target 'mpo.stages.build'") from err
    except RuntimeError as wrapped:
        line = filesystem_error(wrapped)
    assert line.startswith(f"cannot write /store/artifacts/reference: {said}")
    assert filesystem_error(OSError(errno.ECONNRESET, "reset")) is None  # not the user's disk: a bug's traceback
    assert filesystem_error(ValueError("x")) is None


def test_non_utf8_data_is_named_at_composition_and_when_loaded(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "Café review:", "chosen": " très bon", "rejected": " mauvais"}] * 3
    path.write_bytes("\n".join(json.dumps(row, ensure_ascii=False) for row in rows).encode("latin-1"))
    with pytest.raises(DataError, match=r"task\.data\.source=.*pairs\.jsonl: not UTF-8 text: byte 0xe9 at line 1"):
        check_data_source(str(path), "task.data.source")
    with pytest.raises(DataError, match=r"pairs\.jsonl: not UTF-8 text.*iconv -f latin1 -t utf-8"):
        load_pairs(str(path), "train")


def test_a_pairs_file_with_no_usable_pair_is_one_line_through_a_wrapper(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": "p", "chosen": " same", "rejected": " same"}) for _ in range(4)))
    with pytest.raises(DataError) as caught:
        load_pairs(str(path), "train")
    assert "no usable preference pairs among 4 rows (each has identical chosen and rejected" in str(caught.value)
    try:  # Hydra's instantiate raises its own exception while handling the builder's (no `from`)
        try:
            load_pairs(str(path), "train")
        except DataError:
            raise RuntimeError("Error in call to target 'mpo.data.hub.load_pairs'")  # noqa: B904
    except RuntimeError as wrapped:
        assert isinstance(user_error(wrapped), DataError)


def test_ctrl_c_is_one_line_saying_what_was_kept(tmp_path):
    """SIGINT while the reference trains: one line naming the build and the store, the shell's 130, and every
    artifact published before it still in the store."""
    proc = subprocess.Popen([sys.executable, "-m", "mpo.run", "experiment=smoke", "logger=none"], cwd=ROOT,
                            env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if "built base_model" in line:  # the reference build (seconds of SFT) starts next
                time.sleep(1.0)
                proc.send_signal(signal.SIGINT)
                break
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    lines = [line for line in stderr.splitlines() if line.strip()]
    # 130 from sys.exit, or death by SIGINT, which is what a shell reports as 130 too
    assert proc.returncode in (130, -signal.SIGINT), stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    store = tmp_path / "outputs" / "artifacts"
    assert lines[0].startswith("interrupted while building reference: kept every finished artifact in "
                               f"{store}") and "rerun the same command to resume" in lines[0]
    assert any((store / "base_model").iterdir())  # the finished base model is kept
