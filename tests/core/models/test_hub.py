"""``pretrained: true``: timm's hub weights through the Hugging Face cache, offline once
cached; a clear stop when they cannot be had. Each case runs in its own Python, because
huggingface_hub reads ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE`` when it is imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hub import ARCHITECTURE, REPO_ID, offline_env, write_hub_cache

pytestmark = pytest.mark.slow  # a Python process per case

LOAD = """
import json, sys
import torch
from safetensors.torch import load_file
from visrec.core.models import make_classifier, make_embedder

weights = load_file(sys.argv[1])
model = make_classifier("test_resnet", 5, in_chans=int(sys.argv[2]), pretrained=True)
state = model.state_dict()
same = [k for k in state if k in weights and state[k].shape == weights[k].shape
        and torch.equal(state[k], weights[k])]
trunk = make_embedder("test_resnet", 8, False, pretrained=True).trunk.state_dict()
print(json.dumps({"same": same, "keys": sorted(state), "classes": model.num_classes,
                  "trunk_same": all(torch.equal(trunk[k], weights[k]) for k in trunk)}))
"""


def _python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.mark.parametrize("in_chans", [3, 1])
def test_weights_come_from_the_cache_offline(tmp_path: Path, in_chans: int):
    """Every backbone tensor is the cached file's; the 1000-class head is replaced by one
    of 5 classes; grayscale sums the first convolution over colours (timm's adaptation)."""
    cache = tmp_path / "hub"
    weights = write_hub_cache(cache)
    result = _python(LOAD, str(weights), str(in_chans), env=offline_env(cache))
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["classes"] == 5
    differ = set(seen["keys"]) - set(seen["same"])
    expected = {"fc.weight", "fc.bias"} | ({"conv1.0.weight"} if in_chans == 1 else set())
    assert differ == expected
    assert seen["trunk_same"]


CHECK = """
from visrec.core.models.hub import check_hub_weights
check_hub_weights("test_resnet")
print("available")
"""


def test_offline_without_the_cache_stops_naming_the_model_and_what_to_do(tmp_path: Path):
    result = _python(CHECK, env=offline_env(tmp_path / "empty hub"))
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("visrec.core.models.weights.WeightsError: training.pretrained "
                              f"= true: the pretrained weights of '{ARCHITECTURE}' (hub "
                              f"repository {REPO_ID}) are not in the Hugging Face cache")
    for hint in (str(tmp_path / "empty hub"), "HF_HUB_OFFLINE=1",
                 f"timm.create_model('{ARCHITECTURE}', pretrained=True)", "HF_HUB_CACHE",
                 "pretrained_path"):
        assert hint in message, hint
    cache = tmp_path / "hub"
    write_hub_cache(cache)
    assert _python(CHECK, env=offline_env(cache)).stdout.strip() == "available"


NO_HUB = """
from visrec.core.models.hub import check_hub_weights
check_hub_weights("botnet50ts_256", "metric_learning.pretrained")
"""


def test_an_architecture_without_hub_weights_is_refused(tmp_path: Path):
    result = _python(NO_HUB, env=offline_env(tmp_path / "hub"))
    assert result.returncode != 0
    assert ("metric_learning.pretrained = true: timm has no pretrained weights of "
            "'botnet50ts_256' on the Hugging Face hub") in result.stderr
