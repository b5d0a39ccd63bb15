"""The console a researcher reads (mpo.infra.console): off a terminal, bars write nothing and a build is one line;
a finished multirun job is one line. The whole of a piped multirun's console: tests/test_sweeps.py."""

from __future__ import annotations

from mpo.infra import console


def test_off_a_terminal_bars_are_silent_and_a_build_is_one_line(capsys) -> None:
    with console.building("reference"):
        bar = console.bar(range(5), desc="sampling", unit="batch")
        assert sum(1 for _ in bar) == 5  # it still iterates
        progress = console.bar(total=3, desc="training sft")
        progress.update(3)
        progress.close()
    captured = capsys.readouterr()
    assert captured.err == ""
    (line,) = captured.out.splitlines()
    assert line.startswith("  built reference in ") and line.endswith(" s")


def test_a_failed_build_says_nothing(capsys) -> None:
    try:
        with console.building("reference"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert capsys.readouterr().out == ""


def test_durations_read_as_a_person_writes_them() -> None:
    assert [console.duration(s) for s in (0.42, 38.4, 245, 3725)] == ["0.4 s", "38 s", "4 min 05 s", "1 h 02 min"]


def test_a_finished_job_is_one_line() -> None:
    results = {"label": "mpo", "min_win_rate": 0.6691, "min_win_rate_objective": "sentiment",
               "min_win_rate_ci": {"low": 0.634, "high": 0.7044, "level": 0.95},
               "cost": {"split": {"own": {"cpu_seconds": 27.6}}, "run": {"seconds": 245.0}}}
    assert console.job_line(results) == (
        "  mpo: min win-rate 0.669 [0.634, 0.704] (sentiment); own 28 CPU-s; done in 4 min 05 s")
    del results["min_win_rate_ci"], results["cost"]["run"]
    assert console.job_line(results) == "  mpo: min win-rate 0.669 (sentiment); own 28 CPU-s"


def test_training_numbers_go_to_the_log_not_the_console(caplog, capsys) -> None:
    from transformers import TrainerState

    callback = console.training_progress("dpo_sentiment")
    state = TrainerState(global_step=0, max_steps=4)
    with caplog.at_level("INFO", logger="mpo.training"):
        callback.on_train_begin(None, state, None)
        for step in range(1, 5):
            state.global_step = step
            callback.on_step_end(None, state, None)
        callback.on_log(None, state, None, logs={"loss": 0.5})
        callback.on_train_end(None, state, None)
    assert caplog.messages == ["dpo_sentiment step 4: {'loss': 0.5}"]
    assert capsys.readouterr() == ("", "")
