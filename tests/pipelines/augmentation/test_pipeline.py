"""The augmentation pipeline records the policy and previews it."""

import pytest
from matplotlib.figure import Figure
from PIL import Image

from tests.pipelines.helpers import only, run_pipeline
from visrec.core.transforms import build_train_transform
from visrec.params import AugmentationParams
from visrec.pipelines.augmentation import create_pipeline
from visrec.pipelines.ingestion import create_pipeline as ingestion


@pytest.mark.parametrize("policy", ["none", "flip_crop", "randaugment"])
def test_spec_rebuilds_transform_and_preview_has_a_row_per_image(tiny_params, policy):
    first = run_pipeline(ingestion(), only(tiny_params, ingestion()))
    params = AugmentationParams(policy=policy, preview_images=3, preview_repeats=2)
    pipeline = create_pipeline()
    catalog = run_pipeline(pipeline, only(tiny_params, pipeline) | {
        "params:augmentation": params,
        "image_manifest": first["image_manifest"].load(),
        "image_cache": first["image_cache"].load(),
        "ingestion_report": first["ingestion_report"].load()})
    spec = catalog["augmentation_spec"].load()
    assert spec["policy"] == policy
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    out = build_train_transform(spec, 24)(image)
    assert out.shape == (3, 24, 24)  # the recorded spec rebuilds a working transform
    figure = catalog["augmentation_preview"].load()
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 3 * (1 + 2)  # rows x (original + copies)
