"""Unit tests of the augmentation nodes."""

from visrec.core.ingest import build_manifest
from visrec.params import AugmentationParams
from visrec.pipelines.augmentation.nodes import preview_augmentation, select_policy


def test_select_policy_records_every_setting():
    params = AugmentationParams(policy="randaugment(n=3, m=5)", hflip=False, scale=(0.3, 0.9))
    spec = select_policy(params)
    assert spec == {
        "policy": "flip_crop(scale=(0.3, 0.9), ratio=(0.75, 1.33333), hflip=false) + "
                  "randaugment(n=3, m=5)",
        "components": [{"name": "flip_crop", "scale": [0.3, 0.9], "ratio": [0.75, 4 / 3],
                        "hflip": False},
                       {"name": "randaugment", "n": 3, "m": 5}],
        "imgaug": {}}


def test_preview_without_image_size_uses_the_images_median_side(digits_folder):
    manifest, _, _ = build_manifest(digits_folder, 0.1, 0.0, seed=0)
    report = {"root": str(digits_folder), "channels": 3}
    spec = select_policy(AugmentationParams(policy="flip_crop"))
    figure = preview_augmentation(manifest, None, report, spec,
                                  AugmentationParams(preview_images=2, preview_repeats=1),
                                  image_size=None, seed=0)
    shown = figure.axes[0].get_images()[0].get_array()
    assert shown.shape[:2] == (32, 32)  # the demo PNGs are 32 x 32
    assert len(figure.axes) == 2 * 2
