"""Every `python -m mpo.run ...` and `python -m mpo.compare ...` command of README.md copy-pastes into bash as
written: bash leaves its words as they are meant (no unquoted brace, `$`, redirection...); every job an
`mpo.run` command would launch composes with Hydra's compose API and passes the project's config checks
(`mpo.config.load.load_config`), sweeps expanded as Hydra's basic sweeper expands them; `mpo.compare` takes the
arguments."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Transformer

from mpo import compare as compare_cli
from mpo.config.load import load_config
import mpo.config.schema  # noqa: F401  (registers the schemas)

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "python -m mpo.run"
PREFIXES = (PREFIX, "python -m mpo.compare")
# characters bash acts on outside quotes (brace expansion, variables, globs other than [..], redirection, jobs)
SHELL_SPECIAL = set("{}$`;&|<>()*?!")
# flags Hydra takes that the compose API has no use for; the value of --cfg/--package/--info follows it
FLAGS = {"-m", "--multirun", "--help", "-h", "--hydra-help", "--resolve"}
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i"}


# multi-process launchers in front of `-m mpo.run`: what follows is composed like `python -m mpo.run ...`
LAUNCHER = re.compile(r"^(?:srun [^`]*?)?(?:torchrun|accelerate launch)\b[^`]*? -m mpo\.run\b")


def readme_commands(text: str) -> list[str]:
    """`mpo.run` and `mpo.compare` commands (also behind torchrun / accelerate launch) in fenced code blocks (one
    per line) and in inline code spans."""
    lines = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        lines += [line.strip() for line in block.splitlines()]
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    lines += [span.strip() for span in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose)]
    commands = [LAUNCHER.sub(PREFIX, line.split("  # ")[0].strip()) for line in lines]
    return [c for c in commands if c.startswith(PREFIXES)]


def shell_problems(command: str) -> list[str]:
    """Characters of ``command`` that bash would act on: outside quotes, before a comment."""
    problems, quote, previous = [], None, " "
    for char in command:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and previous.isspace():
            break
        elif char in SHELL_SPECIAL:
            problems.append(char)
        previous = char
    return problems + (["an unclosed quote"] if quote else [])


def hydra_arguments(command: str) -> tuple[Path | None, str, list[str]]:
    """--config-dir, --config-name and the overrides of a command, as bash hands them to `mpo.run`."""
    argv = shlex.split(command, comments=True)
    assert argv[:3] == PREFIX.split(), command
    config_dir, config_name, overrides, args = None, "config", [], iter(argv[3:])
    for arg in args:
        if arg in ("--config-dir", "-cd", "--config-name", "-cn"):
            value = next(args)
            config_dir, config_name = ((ROOT / value, config_name) if arg in ("--config-dir", "-cd")
                                       else (config_dir, value))
        elif arg in FLAGS_WITH_VALUE:
            next(args)
        elif arg.startswith("-"):
            assert arg in FLAGS, f"{arg}: not a flag of python -m mpo.run"
        elif not arg.startswith(("hydra/", "hydra.")):  # launchers and Hydra's own settings: not the job's config
            overrides.append(arg)
    return config_dir, config_name, overrides


def jobs(config_name: str, base: list[str], overrides: list[str]) -> list[list[str]]:
    """The overrides of every job the command launches: the sweep file's params and the command's sweeps
    (`a=1,2`), expanded as Hydra's basic sweeper does (a command's value replaces the file's)."""
    sweeper = compose(config_name, overrides=base, return_hydra_config=True).hydra.sweeper
    params = [f"{key}={value}" for key, value in (sweeper.params or {}).items()]
    parsed = OverridesParser.create().parse_overrides([*params, *overrides])
    if str(sweeper.get("_target_", "")).endswith("OptunaSweeper"):
        return optuna_jobs(parsed)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def optuna_jobs(parsed: list) -> list[list[str]]:
    """Every value a `choice(...)` of Optuna's sweeper can take, one job each (the other params at their first
    value), written as that sweeper writes a trial's override: `name=value`, a string unquoted (so the choice
    "[0.8,0.2]" reaches the job as the list [0.8,0.2])."""
    fixed = [f"{o.get_key_element()}={o.get_value_element_as_str()}" for o in parsed if not o.is_sweep_override()]
    jobs = []
    for override in (o for o in parsed if o.is_sweep_override()):
        assert override.is_choice_sweep(), f"{override.input_line}: only choice() is expanded here"
        values = override.sweep_iterator(transformer=Transformer.encode)  # as the sweeper reads them
        jobs += [[*fixed, f"{override.get_key_element()}={value}"] for value in values]
    return jobs or [fixed]


def check(command: str, tmp_path: Path) -> int:
    """Raise as the command would fail; else the number of jobs it launches (each composed and checked)."""
    assert not shell_problems(command), f"bash would act on {shell_problems(command)}: quote that word"
    if not command.startswith(PREFIX + " "):
        compare_cli._parser().parse_args(shlex.split(command, comments=True)[3:])  # exits on a bad argument
        return 1
    config_dir, config_name, overrides = hydra_arguments(command)
    base = [f"paths.root={tmp_path}", f"paths.output_dir={tmp_path}/run"]
    if config_dir is not None:  # --config-dir comes first on the search path, mpo.run's conf/ after it
        base.append(f"hydra.searchpath=[file://{ROOT / 'conf'}]")
    with initialize_config_dir(config_dir=str(config_dir or ROOT / "conf"), version_base="1.3"):
        launched = jobs(config_name, base, overrides)
        for job in launched:
            load_config(compose(config_name, overrides=[*base, *job]))
    return len(launched)


README_COMMANDS = readme_commands((ROOT / "README.md").read_text())


def test_the_readme_has_its_commands():
    assert len(README_COMMANDS) >= 20
    assert any("--config-name compare_methods" in c for c in README_COMMANDS)
    assert any(c.startswith("python -m mpo.compare") for c in README_COMMANDS)
    assert any("+task.objectives." in c for c in README_COMMANDS)  # the custom objective, quoted


@pytest.mark.parametrize("command", README_COMMANDS, ids=[c.split(" #")[0].strip() for c in README_COMMANDS])
def test_readme_command_composes_and_validates(command, tmp_path):
    assert check(command, tmp_path) >= 1


def test_the_check_fails_as_bash_and_hydra_would(tmp_path):
    assert check(f"{PREFIX} -m method=mpo,morlhf seed=0,1   # (four jobs)", tmp_path) == 4
    assert check(f"{PREFIX} --config-dir sweeps --config-name beta seed=0,1", tmp_path) == 2 * 2 * 6
    custom = "+task.objectives.film={scorer:{_target_:mpo.scorers.lexicon.Lexicon,words:[film]}}"
    assert shell_problems(f"{PREFIX} {custom}") == ["{", "{", "}", "}"]  # bash: two words, brace-expanded
    assert check(f"{PREFIX} '{custom}'", tmp_path) == 1
    assert shell_problems(f"{PREFIX} method.weights=[0.8,0.2] 'a=$x' # $HOME (kept)") == []
    with pytest.raises(AssertionError, match="'\\$'"):
        check(f"{PREFIX} paths.root=$HOME/runs", tmp_path)
    with pytest.raises(Exception, match="wieghts"):
        check(f"{PREFIX} method=mpo method.wieghts=[0.8,0.2]", tmp_path)
    with pytest.raises(Exception, match="sums to 1.1"):
        check(f"{PREFIX} -m method=mpo method.weights=[0.5,0.5],[0.5,0.6]", tmp_path)
    assert shell_problems("python -m mpo.compare outputs/multirun/<time>") == ["<", ">"]
    with pytest.raises(SystemExit):
        check("python -m mpo.compare --baseline", tmp_path)
    with pytest.raises(Exception, match="mpoo"):
        check(f"{PREFIX} --config-dir sweeps --config-name compare_methods method=mpoo", tmp_path)
