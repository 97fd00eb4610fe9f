"""Unit tests of the augmentation nodes."""

from visrec.core.ingest import build_manifest
from visrec.params import AugmentationParams
from visrec.pipelines.augmentation.nodes import preview_augmentation, select_policy


def test_select_policy_records_every_setting():
    spec = select_policy(AugmentationParams(policy="randaugment", hflip=False, scale=(0.3, 0.9),
                                            randaugment_ops=3, randaugment_magnitude=5))
    assert spec == {"policy": "randaugment", "hflip": False, "scale": [0.3, 0.9],
                    "randaugment": {"num_ops": 3, "magnitude": 5}}

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
