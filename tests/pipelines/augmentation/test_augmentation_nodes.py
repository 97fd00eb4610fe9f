"""Unit tests of the augmentation nodes."""


from tests.params import base_params
from tests.pipelines.helpers import make_report
from visrec.core.data import make_manifest
from visrec.params import AugmentationParams
from visrec.pipelines.augmentation.nodes import make_policy_spec, preview_augmentation


def test_the_policy_spec_records_every_setting():
    """The spec is ``augmentation.policy`` with every argument written."""
    params = base_params(AugmentationParams, policy="randaugment(n=3, m=5)", hflip=False,
                         scale=(0.3, 0.9))
    spec = make_policy_spec(params)
    assert spec.to_json() == {
        "policy": "flip_crop(scale=(0.3, 0.9), ratio=(0.75, 1.33333), hflip=false) + "
                  "randaugment(n=3, m=5)",
        "components": [{"name": "flip_crop", "scale": [0.3, 0.9], "ratio": [0.75, 4 / 3],
                        "hflip": False},
                       {"name": "randaugment", "n": 3, "m": 5}],
        "imgaug": {},
        "search": None}
    assert spec == params.spec()


def test_preview_without_image_size_uses_the_images_median_side(digits_folder):
    manifest, _, facts = make_manifest(digits_folder, 0.1, 0.0, seed=0)
    report = make_report(str(digits_folder), list(facts.classes))
    spec = base_params(AugmentationParams, policy="flip_crop", hflip=True,
                       scale=(0.35, 1.0)).spec()
    figure = preview_augmentation(manifest, None, report, spec,
                                  base_params(AugmentationParams, preview_images=2,
                                              preview_repeats=1),
                                  image_size=None, seed=0)
    shown = figure.axes[0].get_images()[0].get_array()
    assert shown.shape[:2] == (32, 32)  # the demo PNGs are 32 x 32
    assert len(figure.axes) == 2 * 2
