import json
import multiprocessing as mp
import os
import re
import signal
import time
from pathlib import Path

import pytest

from mpo.infra.errors import ArtifactError
from mpo.store.artifacts import ArtifactStore, digest


def _writer(out: Path, value: str, log: list | None = None) -> dict:
    (out / "value.txt").write_text(value)
    return {"n": len(value)}


def test_build_then_reuse(tmp_path):
    store = ArtifactStore(tmp_path)
    calls = []
    first = store.get_or_build("stage", {"a": 1}, lambda out: calls.append(1) or _writer(out, "x"))
    second = store.get_or_build("stage", {"a": 1}, lambda out: calls.append(1) or _writer(out, "y"))
    assert calls == [1] and not first.reused and second.reused
    assert (second.path / "value.txt").read_text() == "x"
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["spec"] == {"a": 1} and manifest["info"] == {"n": 1}
    assert set(manifest["cost"]) == {"wall_seconds", "cpu_seconds", "peak_memory_mb"}
    assert "torch" in manifest["versions"]


def test_changed_spec_or_dependency_rebuilds(tmp_path):
    store = ArtifactStore(tmp_path)
    up = store.get_or_build("up", {"a": 1}, lambda out: _writer(out, "u"))
    up2 = store.get_or_build("up", {"a": 2}, lambda out: _writer(out, "v"))
    assert up.path != up2.path
    down = store.get_or_build("down", {"b": 1}, lambda out: _writer(out, "d"), deps=[up])
    down_again = store.get_or_build("down", {"b": 1}, lambda out: _writer(out, "e"), deps=[up])
    down_new_dep = store.get_or_build("down", {"b": 1}, lambda out: _writer(out, "f"), deps=[up2])
    assert down_again.reused and down_again.path == down.path
    assert not down_new_dep.reused and down_new_dep.path != down.path


def test_digest_ignores_key_order_but_not_values():
    assert digest("s", {"a": 1, "b": [1, 2]}) == digest("s", {"b": [1, 2], "a": 1})
    assert digest("s", {"a": 1}) != digest("s", {"a": 1.5}) != digest("t", {"a": 1})
    with pytest.raises(TypeError, match="plain JSON"):
        digest("s", {"a": object()})


def test_failed_build_leaves_nothing(tmp_path):
    store = ArtifactStore(tmp_path)

    def boom(out: Path):
        (out / "half.txt").write_text("partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        store.get_or_build("stage", {"a": 1}, boom)
    assert list((tmp_path / "stage").glob("*/manifest.json")) == []
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "stage").iterdir())
    assert store.get_or_build("stage", {"a": 1}, lambda out: _writer(out, "ok")).reused is False


def _slow_build(root: str, marker: str) -> str:
    def build(out: Path):
        with open(marker, "a") as f:
            f.write("built\n")
        time.sleep(1.0)
        (out / "v.txt").write_text("done")

    return str(ArtifactStore(root).get_or_build("shared", {"k": 1}, build).path)


def test_two_processes_build_one_key_once(tmp_path):
    marker = tmp_path / "builds.log"
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        paths = pool.starmap(_slow_build, [(str(tmp_path / "store"), str(marker))] * 2)
    assert paths[0] == paths[1]
    assert marker.read_text().count("built") == 1


# ---------------------------------------------------------------- verification
def _two_files(out: Path) -> dict:
    (out / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (out / "sub").mkdir()
    (out / "sub" / "config.json").write_text('{"a": 1}')
    return {}


def test_manifest_records_every_file_and_reuse_verifies_them(tmp_path, caplog):
    store = ArtifactStore(tmp_path)
    first = store.get_or_build("stage", {"a": 1}, _two_files)
    files = first.manifest["files"]
    assert set(files) == {"weights.bin", "sub/config.json"} and files["weights.bin"]["size"] == 256 * 64
    with open(first.path / "weights.bin", "r+b") as f:  # one block overwritten in place, same size
        f.seek(4096)
        f.write(b"\xff" * 512)
    calls = []
    fresh = ArtifactStore(tmp_path)  # another run: nothing verified yet
    with caplog.at_level("WARNING"):
        again = fresh.get_or_build("stage", {"a": 1}, lambda out: calls.append(1) or _two_files(out))
    assert calls == [1] and not again.reused  # detected and rebuilt, never used
    assert "weights.bin was modified" in caplog.text and "rebuilding" in caplog.text
    assert (again.path / "weights.bin").read_bytes() == bytes(range(256)) * 64


def test_truncated_or_missing_files_are_detected_and_lookup_says_how_to_fix(tmp_path):
    store = ArtifactStore(tmp_path)
    artifact = store.get_or_build("stage", {"a": 1}, _two_files)
    with open(artifact.path / "weights.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(ArtifactError, match=r"weights.bin has 100 bytes, 16384 were recorded\): delete it \(rm -rf "):
        ArtifactStore(tmp_path).lookup("stage", {"a": 1})
    (artifact.path / "weights.bin").unlink()
    with pytest.raises(ArtifactError, match="weights.bin is missing"):
        ArtifactStore(tmp_path).lookup("stage", {"a": 1})


def test_fast_path_trusts_an_unchanged_stat_except_for_weights_which_are_always_hashed(tmp_path, monkeypatch):
    import mpo.store.files as files

    store = ArtifactStore(tmp_path)
    artifact = store.get_or_build("stage", {"a": 1}, _two_files)
    hashed = []
    real = files.sha256_file
    monkeypatch.setattr(files, "sha256_file", lambda p: hashed.append(p.name) or real(p))
    # weights: hashed on first use in a process whatever the stat says (a rotten block changes no stat field)
    assert ArtifactStore(tmp_path).lookup("stage", {"a": 1}) is not None and hashed == ["weights.bin"]
    hashed.clear()
    config = artifact.path / "sub" / "config.json"
    os.utime(config, ns=(1, 1))  # copied without -p, say: same content, new mtime
    assert ArtifactStore(tmp_path).lookup("stage", {"a": 1}) is not None and sorted(hashed) == ["config.json", "weights.bin"]


def test_an_edit_that_restores_the_mtime_is_caught_by_the_ctime(tmp_path, caplog):
    """An editor (or `touch -d`) that keeps size and mtime still changes the status-change time: rehashed."""
    store = ArtifactStore(tmp_path)
    artifact = store.get_or_build("stage", {"a": 1}, _two_files)
    config = artifact.path / "sub" / "config.json"
    before = config.stat()
    time.sleep(0.01)
    config.write_text(config.read_text().replace("1", "2"))  # same size
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert config.stat().st_mtime_ns == before.st_mtime_ns and config.stat().st_size == before.st_size
    with pytest.raises(ArtifactError, match="config.json was modified"):
        ArtifactStore(tmp_path).lookup("stage", {"a": 1})


def test_keys_cover_the_contents_of_local_inputs(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "a"}\n')
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"n": 1}')
    store = ArtifactStore(tmp_path / "store")
    spec = {"source": str(data), "pretrained": str(model)}
    first = store.get_or_build("s", spec, lambda out: _writer(out, "1"))
    assert store.get_or_build("s", spec, lambda out: _writer(out, "2")).reused
    assert set(first.manifest["inputs"]) == {str(data), str(model)}
    data.write_text('{"text": "b"}\n')  # rewritten in place: same path, same size
    rebuilt = store.get_or_build("s", spec, lambda out: _writer(out, "3"))
    assert not rebuilt.reused and rebuilt.path != first.path
    (model / "config.json").write_text('{"n": 2}')
    assert not store.get_or_build("s", spec, lambda out: _writer(out, "4")).reused


# ---------------------------------------------------------------- dead builders and locks
def _killed_build(root: str, checkpoint: bool) -> None:
    def build(out: Path):
        if checkpoint:
            (out / "_trainer" / "checkpoint-2").mkdir(parents=True)
            (out / "_trainer" / "checkpoint-2" / "trainer_state.json").write_text("{}")
        (out / "half-written.bin").write_bytes(b"x" * 10)
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 mid-build

    ArtifactStore(root).get_or_build("stage", {"a": 1}, build)


def _run_killed(root: Path, checkpoint: bool) -> None:
    proc = mp.get_context("spawn").Process(target=_killed_build, args=(str(root), checkpoint))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL


def test_a_killed_build_is_resumed_from_its_checkpoints_or_cleaned(tmp_path):
    _run_killed(tmp_path, checkpoint=True)
    seen = []

    def build(out: Path):
        seen.append(sorted(p.relative_to(out).as_posix() for p in out.rglob("*")))
        return _writer(out, "ok")

    artifact = ArtifactStore(tmp_path).get_or_build("stage", {"a": 1}, build)  # the lock died with its holder
    assert seen == [["_trainer", "_trainer/checkpoint-2", "_trainer/checkpoint-2/trainer_state.json"]]
    assert set(artifact.manifest["files"]) == {"value.txt"}  # checkpoints are not part of the artifact
    assert [p.name for p in (tmp_path / "stage").iterdir() if p.name.startswith(".")] == []
    _run_killed(tmp_path / "again", checkpoint=False)
    seen.clear()
    ArtifactStore(tmp_path / "again").get_or_build("stage", {"a": 1}, build)
    assert seen == [[]]  # nothing to resume: the debris was cleared, not trusted


def test_abandoned_builds_of_other_keys_do_not_pile_up(tmp_path):
    from mpo.store.artifacts import STALE_AFTER

    stage = tmp_path / "stage"
    old, recent, legacy, long_build = (stage / ".build-aaaa", stage / ".build-bbbb", stage / ".tmp-cccc-123-456",
                                       stage / ".build-dddd")
    for d in (old, recent, legacy, long_build):
        (d / "_trainer" / "checkpoint-10").mkdir(parents=True)
    long_ago = time.time() - STALE_AFTER - 60
    for d in (old, legacy, long_build):
        for entry in (d / "_trainer" / "checkpoint-10", d / "_trainer", d):
            os.utime(entry, (long_ago, long_ago))
    # a build started long ago whose newest checkpoint is an hour old: alive (killed at hour 29 of 30, say)
    (long_build / "_trainer" / "checkpoint-290").mkdir()
    an_hour_ago = time.time() - 3600
    os.utime(long_build / "_trainer" / "checkpoint-290", (an_hour_ago, an_hour_ago))
    os.utime(long_build, (long_ago, long_ago))
    ArtifactStore(tmp_path).get_or_build("stage", {"a": 1}, lambda out: _writer(out, "x"))
    assert not old.exists() and not legacy.exists()
    assert recent.exists() and long_build.exists()  # maybe resumed soon


def _hold_lock(lock_path: str, ready: str, seconds: float) -> None:
    from mpo.store.lock import KeyLock

    with KeyLock(Path(lock_path), "the test artifact", 60):
        Path(ready).write_text("held")
        time.sleep(seconds)


def test_a_waiting_job_names_the_holder_and_times_out_with_a_message(tmp_path, caplog):
    store = ArtifactStore(tmp_path, lock_timeout=1.5)
    path = store.path_for("stage", {"a": 1})
    path.parent.mkdir(parents=True)
    ready = tmp_path / "ready"
    holder = mp.get_context("spawn").Process(target=_hold_lock, args=(f"{path}.lock", str(ready), 30))
    holder.start()
    try:
        deadline = time.time() + 60
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.05)
        with caplog.at_level("INFO"), pytest.raises(ArtifactError) as raised:
            store.get_or_build("stage", {"a": 1}, lambda out: _writer(out, "x"))
    finally:
        holder.kill()
        holder.join()
    assert f"waiting for the stage artifact {path.name}: pid {holder.pid} on " in caplog.text
    message = str(raised.value)
    assert message.startswith("gave up after 2 s waiting for the stage artifact") and f"pid {holder.pid}" in message
    assert f"delete {path}.lock" in message


def test_every_torch_load_is_weights_only():
    """torch.load unpickles arbitrary code unless weights_only=True; every call in the package must say so."""
    import ast

    root = Path(__file__).resolve().parents[1]
    calls = []
    for source in [*root.glob("mpo/**/*.py")]:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                safe = any(k.arg == "weights_only" and ast.unparse(k.value) == "True" for k in node.keywords)
                calls.append((f"{source.relative_to(root)}:{node.lineno}", safe))
    assert calls and [where for where, safe in calls if not safe] == []


# ------------------------------------------------------------------ keys that know the code, nothing unfit published


def test_editing_a_scorers_code_is_a_new_key(tmp_path, monkeypatch):
    """A spec naming a `_target_` is keyed by the source of the file defining it: the same config over edited
    code rebuilds (the pairs a scorer labelled are never reused under its new code)."""
    module = tmp_path / "code" / "my_scorer_for_keys.py"
    module.parent.mkdir()
    module.write_text("def score(prompts, responses):\n    return [float(len(r)) for r in responses]\n")
    monkeypatch.syspath_prepend(str(module.parent))
    store = ArtifactStore(tmp_path / "store")
    spec = {"scorer": {"_target_": "my_scorer_for_keys.score"}, "seed": 0}
    first = store.get_or_build("pairs", spec, lambda out: _writer(out, "old"))
    assert store.get_or_build("pairs", spec, lambda out: _writer(out, "again")).reused
    assert first.manifest["code"] == {"my_scorer_for_keys.score": first.manifest["code"]["my_scorer_for_keys.score"]}
    module.write_text("def score(prompts, responses):\n    return [-float(len(r)) for r in responses]\n")
    rebuilt = store.get_or_build("pairs", spec, lambda out: _writer(out, "new"))
    assert not rebuilt.reused and rebuilt.path != first.path
    assert digest("x", {"a": 1}) == digest("x", {"a": 1})  # specs without a target: keys as before


def test_a_local_input_edited_with_its_mtime_restored_is_a_new_key(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "a"}\n')
    store = ArtifactStore(tmp_path / "store")
    first = store.get_or_build("s", {"source": str(data)}, lambda out: _writer(out, "1"))
    before = data.stat()
    data.write_text('{"text": "b"}\n')
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))  # an editor that keeps the mtime
    again = ArtifactStore(tmp_path / "store").get_or_build("s", {"source": str(data)}, lambda out: _writer(out, "2"))
    assert not again.reused and again.path != first.path


def _safetensors(out: Path, values) -> dict:
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.tensor(values, dtype=torch.float32)}, str(out / "model.safetensors"))
    return {}


def test_weights_damaged_in_place_are_rebuilt_with_a_warning_even_with_the_stat_restored(tmp_path, capsys):
    """Bit rot in a model's safetensors (its header included), size and mtime unchanged: caught when the
    artifact is first used, rebuilt, said on the console; never loaded."""
    store = ArtifactStore(tmp_path)
    first = store.get_or_build("reference", {"a": 1}, lambda out: _safetensors(out, [1.0, 2.0, 3.0]))
    weights = first.path / "model.safetensors"
    before = weights.stat()
    with open(weights, "r+b") as f:
        f.write(b"\0" * 16)  # the header's length and start
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    calls = []
    again = ArtifactStore(tmp_path).get_or_build("reference", {"a": 1},
                                                 lambda out: calls.append(1) or _safetensors(out, [1.0, 2.0, 3.0]))
    assert calls == [1] and not again.reused
    assert "failed verification (model.safetensors was modified" in capsys.readouterr().out


@pytest.mark.parametrize("build, problem", [
    (lambda out: {}, "no files"),
    (lambda out: _safetensors(out, [1.0, float("nan"), float("inf")]), "2 non-finite weights of 3 in model.safetensors"),
    (lambda out: __import__("datasets").Dataset.from_dict({"chosen": [], "rejected": []}).save_to_disk(str(out)),
     "an empty dataset (0 rows)"),
])
def test_an_empty_or_non_finite_build_is_never_published(tmp_path, build, problem):
    store = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactError, match=re.escape(problem)):
        store.get_or_build("stage", {"a": 1}, build)
    assert store.lookup("stage", {"a": 1}) is None and not list((tmp_path / "stage").glob(".build-*"))
    fine = store.get_or_build("stage", {"a": 1}, lambda out: _safetensors(out, [0.5]))
    assert not fine.reused


def test_a_dataset_with_rows_is_published(tmp_path):
    import datasets

    build = lambda out: datasets.Dataset.from_dict({"chosen": ["a"], "rejected": ["b"]}).save_to_disk(str(out))
    assert not ArtifactStore(tmp_path).get_or_build("pairs", {"a": 1}, build).reused


def test_results_that_cannot_be_written_are_kept_and_the_error_says_where(tmp_path, monkeypatch):
    """A full disk under the run dir: no empty results.json.tmp, the results kept in the store, one line saying
    "the disk is full" and where they are."""
    import errno

    from mpo.store.artifacts import write_results

    run_dir, store = tmp_path / "run", tmp_path / "store"
    run_dir.mkdir()
    real = Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.parent == run_dir:
            real(self, "")  # the 0-byte file a full disk leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(ArtifactError, match=r"the disk is full\); the evaluation finished and they are kept in ") as err:
        write_results({"min_win_rate": 0.5}, run_dir / "results.json", store)
    kept = Path(str(err.value).split("they are kept in ")[1].split(":")[0])
    assert kept.parent == store / "unsaved_results" and json.loads(kept.read_text()) == {"min_win_rate": 0.5}
    assert list(run_dir.iterdir()) == []
