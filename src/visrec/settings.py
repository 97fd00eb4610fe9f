"""Project settings for Kedro: https://docs.kedro.org/en/stable/kedro_project_setup/settings.html."""

from typing import Any

from visrec.config import ConfigLoader
from visrec.hooks import RunChecks

# Checks of every parameter, and of parameters against the images, that must stop a run
# before its first node.
HOOKS = (RunChecks(),)

# Kedro's OmegaConfigLoader, with the values DVC's params.yaml sets applied over conf/
# (`dvc exp run -S training.epochs=2` reaches the run): see src/visrec/config.py.
CONFIG_LOADER_CLASS = ConfigLoader
CONFIG_LOADER_ARGS: dict[str, Any] = {
    "base_env": "base",
    "default_run_env": "local",
    # Soft merge: `conf/test` overrides single keys of a block instead of replacing the block.
    "merge_strategy": {"parameters": "soft", "catalog": "soft"},
}
