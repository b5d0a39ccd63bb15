"""How `python -m mpo.run` reports a failure: a user's mistake as one line naming the key and the fix (exit
code 2, no traceback); a bug with its traceback (exit code 1).

Hydra prints its own multi-line report of every exception and exits; `HYDRA_FULL_ERROR=1` makes it re-raise
instead, so `exit_on_user_error` sets it for the duration and tells the two kinds apart. A user who sets
HYDRA_FULL_ERROR=1 themselves gets every traceback, as Hydra promises.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from mpo.config.dirs import CONF_DIR
from mpo.infra.errors import closest, did_you_mean, filesystem_error, one_line, user_error

log = logging.getLogger(__name__)
USER_ERROR_EXIT_CODE = 2
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a job stopped by Ctrl-C


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    wants_traceback = os.environ.get("HYDRA_FULL_ERROR", "").strip() == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its own report
    stderr, sys.stderr = sys.stderr, _WithoutHydraJobLine(sys.stderr)
    try:
        yield
    except Exception as err:  # noqa: BLE001 - sorted into the user's mistakes and bugs right here
        job = getattr(err, "mpo_job", None)
        where = f" [sweep job {job}]" if job else ""
        message = None if wants_traceback else describe(err)
        if message is None:
            stderr.write(f"error{where}: a bug, not a config mistake; the traceback follows\n")
            raise
        stderr.write(f"error{where}: {message}\n")
        sys.exit(USER_ERROR_EXIT_CODE)
    except KeyboardInterrupt as err:
        if wants_traceback:
            raise
        stderr.write(interrupted(err) + "\n")
        sys.exit(INTERRUPTED_EXIT_CODE)
    finally:
        sys.stderr = stderr


def interrupted(err: KeyboardInterrupt) -> str:
    """Ctrl-C as one line: what the artifact store kept (every finished artifact; an interrupted build keeps
    its training checkpoints, `mpo.store.artifacts`) and that rerunning the command resumes."""
    job = getattr(err, "mpo_job", None)
    where = f" [sweep job {job}]" if job else ""
    store = getattr(err, "mpo_store", None)
    building = getattr(err, "mpo_building", None)
    kept = f"kept every finished artifact{f' in {store}' if store else ''}"
    if building:
        return (f"interrupted{where} while building {building}: {kept} and the last checkpoint of the {building} "
                "build (if it had saved one); rerun the same command to resume")
    return f"interrupted{where}: {kept}; rerun the same command to resume"


class _WithoutHydraJobLine:
    """stderr without Hydra's "Error executing job with overrides: [...]" line: it repeats the overrides
    unmasked (secrets included), and our own line says which job failed."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if text.startswith("Error executing job with overrides:"):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def describe(err: BaseException) -> str | None:
    """The one line for a user's mistake, or None for anything else (a bug: keep its traceback)."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    if user_error(err) is not None:
        return one_line(str(user_error(err)))
    if isinstance(err, MissingConfigException):
        return _missing_preset(err)
    if isinstance(err, OverrideParseException):
        return one_line(str(err).split("See https://")[0])
    if isinstance(err, ConfigCompositionException):
        return _composition(err)
    if isinstance(err, AssertionError) and "Unexpected type for root" in str(err):
        return _override_into_null(err)
    return filesystem_error(err)


def _override_into_null(err: AssertionError) -> str | None:
    """``policy.lora.r=4`` where policy.lora is null: OmegaConf asserts while Hydra applies the override (no
    message of its own); the override is read from Hydra's frame, and the line names the preset to add."""
    override, tb = None, err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "_apply_overrides_to_config":
            override = tb.tb_frame.f_locals.get("override")
        tb = tb.tb_next
    if override is None or not getattr(override, "key_or_group", None):
        return None
    line, (parent, _, name) = override.input_line, override.key_or_group.rpartition(".")
    group = parent.replace(".", "/")
    options = presets(group) if group else []
    if options:
        return (f"{line}: {parent} is null in this run (no {group} preset), so it has no {name!r} to set; add a "
                f"preset first, +{group}=<{'|'.join(options)}> (conf/{group}/), e.g. +{group}={options[0]} {line}")
    return f"{line}: {parent or 'the config'} is null, so it has no {name!r} to set; set {parent} itself first"


def _missing_preset(err: Exception) -> str:
    found = re.search(r"Could not find '([\w/]+)/([^']+)'", str(err))
    if not found:
        return one_line(str(err))
    group, name = found.groups()
    options = presets(group)  # listed in full just after, so only the closest one as a hint
    return f"{group}={name}: no such {group} preset{closest(name, options)}; the presets are {', '.join(options)}"


def presets(group: str) -> list[str]:
    """The options a user can pick in a config group: the files of every config dir on Hydra's search path
    (and plugins' options, e.g. hydra/launcher=joblib), without the typed schemas that `mpo.config` registers
    as `_<name>` for the presets to extend."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside @hydra.main (--help): its search path, --config-dir too
        options = GlobalHydra.instance().config_loader().get_group_options(group)
    else:  # Hydra has gone (a composition error): our config dir and Hydra's plugins
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            options = GlobalHydra.instance().config_loader().get_group_options(group)
    return sorted(option for option in options if not option.startswith("_"))


def _presets_help(group: str) -> str:
    """``${mpo.presets:GROUP}`` in conf/hydra/help/mpo.yaml: the group's presets, `*` on this command's choice."""
    from mpo.infra.hydra_job import runtime_choices

    chosen = runtime_choices().get(group)
    return ", ".join(f"{option}*" if option == chosen else option for option in presets(group))


def register_help_resolver() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("mpo.presets", _presets_help, replace=True)


def _composition(err: Exception) -> str:
    """Hydra's "Could not override 'x'. To append to your config use +x=..." told with what is actually known:
    the `+` prefix cannot add a key to a typed node, so that advice would lead nowhere."""
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    cause = err.__cause__
    if not isinstance(cause, OmegaConfBaseException) or not cause.full_key:
        return one_line(str(err))
    key, value = cause.full_key, _override_value(err, cause.full_key)
    if not isinstance(cause, (ConfigKeyError, AttributeError)):  # a value of the wrong type
        return f"{key}={value}: {one_line(str(cause).splitlines()[0])}"
    name = key.rsplit(".", 1)[-1]
    if dataclasses.is_dataclass(cause.object_type):
        fields = [f.name for f in dataclasses.fields(cause.object_type)]
        return (f"{key}: unknown key{did_you_mean(name, fields)}; {cause.object_type.__name__} has no such "
                "setting: fix the name")
    return _open_node_key(key, name, value, getattr(cause, "parent_node", None))


def _open_node_key(key: str, name: str, value: str, parent) -> str:
    """A key missing from an untyped node (trainer kwargs, a `_target_`'s arguments): a typo, or a setting the
    preset does not list, which `+` adds (and `mpo.config.checks` then checks)."""
    from mpo.config.checks import TRAINER_CONFIGS, trainer_params
    from mpo.config.signatures import callable_params

    stage = re.fullmatch(r"trainer\.(\w+)\.[^.]+", key)
    known = trainer_params(stage.group(1)) if stage and stage.group(1) in TRAINER_CONFIGS else None
    target = parent.get("_target_") if parent is not None and hasattr(parent, "get") else None
    params = known[1] if known else (callable_params(str(target)) if target else None)
    owner = known[0] if known else target
    if params is not None and not params.open and name not in params.names:
        return f"{key}: not a setting of {owner}{did_you_mean(name, params.names)}; fix the name"
    return f"{key} is not set by the presets; to add it, write +{key}={value}"


def _override_value(err: Exception, key: str) -> str:
    found = re.search(rf"(?:Could not override '|Error merging override ){re.escape(key)}'?(?:=(\S+))?", str(err))
    hint = re.search(rf"\+{re.escape(key)}=(\S+)", str(err))
    return (hint and hint.group(1)) or (found and found.group(1)) or "<value>"
