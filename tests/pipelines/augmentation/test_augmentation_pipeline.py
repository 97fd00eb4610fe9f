"""The augmentation pipeline records the policy and previews it."""

import pytest
from matplotlib.figure import Figure
from PIL import Image

from tests.params import base_params
from tests.pipelines.helpers import only, run_pipeline
from visrec.core.augment import make_train_transform
from visrec.params import AugmentationParams
from visrec.pipelines.augmentation import create_pipeline
from visrec.pipelines.class_balance import create_pipeline as class_balance
from visrec.pipelines.ingestion import create_pipeline as ingestion

UPSTREAM = ["image_manifest", "image_cache", "ingestion_report", "balance_plan"]


def _params(**overrides: object) -> AugmentationParams:
    """The ``augmentation`` block: mirrored crops of 35-100% of the image, and
    ``overrides``."""
    plain = {"hflip": True, "scale": (0.35, 1.0)}
    return base_params(AugmentationParams, **(plain | overrides))


def _upstream(tiny_params) -> dict:
    before = ingestion() + class_balance()
    catalog = run_pipeline(before, only(tiny_params, before))
    return {name: catalog[name].load() for name in UPSTREAM}


@pytest.mark.parametrize("policy", ["none", "flip_crop", "randaugment(n=2, m=9)"])
def test_spec_rebuilds_transform_and_preview_has_a_row_per_image(tiny_params, policy):
    params = _params(policy=policy, preview_images=3, preview_repeats=2)
    pipeline = create_pipeline()
    catalog = run_pipeline(pipeline, only(tiny_params, pipeline) | _upstream(tiny_params) | {
        "params:augmentation": params})
    spec = catalog["augmentation_spec"].load()
    assert spec == params.spec()
    names = [component["name"] for component in spec.components]
    assert names[-1:] == ([] if policy == "none" else [policy.split("(")[0]])
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    out = make_train_transform(spec, 24)(image)
    assert out.shape == (3, 24, 24)  # the recorded spec rebuilds a working transform
    figure = catalog["augmentation_preview"].load()
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 3 * (1 + 2)  # rows x (original + copies)
