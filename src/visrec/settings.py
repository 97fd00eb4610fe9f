"""Project settings for Kedro: https://docs.kedro.org/en/stable/kedro_project_setup/settings.html."""

from kedro.config import OmegaConfigLoader

from visrec.hooks import RunChecks

# Checks of every parameter, and of parameters against the images, that must stop a run
# before its first node.
HOOKS = (RunChecks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Soft merge: `conf/test` overrides single keys of a block instead of replacing the block.
    "merge_strategy": {"parameters": "soft", "catalog": "soft"},
}
