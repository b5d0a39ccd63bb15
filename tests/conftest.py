"""Every test runs offline and quiet, with HF and W&B caches under a per-session temp dir."""

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="mpo-tests-")
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HOME": os.path.join(_TMP, "hf"),
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB_DISABLE_GIT": "true",
    "WANDB_DISABLE_CODE": "true",
    "WANDB_DIR": os.path.join(_TMP, "wandb"),
    "WANDB_CACHE_DIR": os.path.join(_TMP, "wandb-cache"),
    "WANDB_DATA_DIR": os.path.join(_TMP, "wandb-data"),
    "WANDB_CONFIG_DIR": os.path.join(_TMP, "wandb-config"),
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ[key] = value
os.environ.pop("WANDB_API_KEY", None)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose(overrides=(), root: Path | None = None):
    """The real config, composed by Hydra's compose API, with paths under ``root``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import mpo.config.schema  # noqa: F401  (registers the schemas)

    paths = [f"paths.root={root}", f"paths.output_dir={root}/run"] if root is not None else []
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=[*paths, *overrides])


@pytest.fixture
def compose_cfg(tmp_path):
    return lambda *overrides: compose(overrides, tmp_path)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads; on a 2-core machine shared with other work those
    threads spin and make training steps 5-10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
