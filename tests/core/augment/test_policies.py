"""Tests of visrec.core.augment.policies: policy strings, their components, their errors."""

from __future__ import annotations

import pytest

from tests.params import base_params, base_raw
from visrec.core.augment import PolicyError, canonical, parse_policy
from visrec.core.augment.policies import (
    AugMix,
    AutoAugment,
    CutMix,
    Cutout,
    Erasing,
    FlipCrop,
    Imgaug,
    MixUp,
    RandAugment,
    TrivialAugment,
)
from visrec.params import AugmentationParams, ParameterError

ACCEPTED_NAMES = ("['none', 'flip_crop', 'autoaugment', 'randaugment', 'trivialaugment', "
                  "'augmix', 'imgaug', 'erasing', 'cutout', 'mixup', 'cutmix']")
DEFAULTS = {"scale": (0.5, 0.9), "hflip": False}


def _names(text: str) -> list[str]:
    return [component.name for component in parse_policy(text)]


def _argument(text: str, name: str, field: str):
    return getattr(next(c for c in parse_policy(text) if c.name == name), field)


@pytest.mark.parametrize(("text", "expected"), [
    ("flip_crop", [FlipCrop()]),
    ("flip_crop(scale=(0.5, 1), hflip=false)", [FlipCrop(scale=(0.5, 1.0), hflip=False)]),
    ("autoaugment", [FlipCrop(), AutoAugment(policy="imagenet")]),
    ("autoaugment(cifar10)", [FlipCrop(), AutoAugment(policy="cifar10")]),
    ("autoaugment(policy=svhn)", [FlipCrop(), AutoAugment(policy="svhn")]),
    ("randaugment(n=3, m=7)", [FlipCrop(), RandAugment(n=3, m=7)]),
    ("trivialaugment", [FlipCrop(), TrivialAugment()]),
    ("augmix(severity=2, width=4, depth=-1, alpha=0.5, jsd=true, jsd_weight=6)",
     [FlipCrop(), AugMix(severity=2, width=4, depth=-1, alpha=0.5, jsd=True, jsd_weight=6.0)]),
    ("imgaug(light)", [FlipCrop(), Imgaug(pipeline="light")]),
    ("erasing(p=0.5, scale=(0.1, 0.3), ratio=[0.5, 2], mode=rand)",
     [FlipCrop(), Erasing(p=0.5, scale=(0.1, 0.3), ratio=(0.5, 2.0), mode="rand")]),
    ("cutout(size=0.25)", [FlipCrop(), Cutout(p=1.0, size=0.25)]),
    ("mixup(alpha=0.4, prob=0.5)", [FlipCrop(), MixUp(alpha=0.4, prob=0.5)]),
    ("cutmix", [FlipCrop(), CutMix(alpha=1.0, prob=1.0)]),
    ("RandAugment(n=1) + MixUp", [FlipCrop(), RandAugment(n=1, m=9), MixUp()]),
    ("none", []),
    ("  NONE ", []),
])
def test_parse_policy_components(text, expected):
    assert parse_policy(text) == expected


def test_default_arguments():
    assert FlipCrop().model_dump() == {"scale": (0.35, 1.0), "ratio": (0.75, 4 / 3),
                                       "hflip": True}
    assert RandAugment().model_dump() == {"n": 2, "m": 9}
    assert AugMix().model_dump() == {"severity": 3, "width": 3, "depth": -1, "alpha": 1.0,
                                     "jsd": False, "jsd_weight": 12.0}
    assert Erasing().model_dump() == {"p": 0.25, "scale": (0.02, 1 / 3),
                                      "ratio": (0.3, 1 / 0.3), "mode": "pixel"}
    assert Cutout().model_dump() == {"p": 1.0, "size": 0.5}
    assert (MixUp().alpha, CutMix().alpha) == (0.2, 1.0)


def test_canonical_writes_every_argument_in_stage_order():
    assert canonical(parse_policy("mixup + randaugment(m=5) + cutout(size=0.25)")) == (
        "flip_crop(scale=(0.35, 1), ratio=(0.75, 1.33333), hflip=true) + "
        "randaugment(n=2, m=5) + cutout(p=1, size=0.25) + mixup(alpha=0.2, prob=1)")
    assert canonical([]) == "none"
    assert canonical(parse_policy("imgaug(light)")).endswith(" + imgaug(pipeline=light)")


@pytest.mark.parametrize("text", [
    # flip_crop's ratio written out: its default 4/3 is recorded to 6 digits (next test)
    "flip_crop(ratio=(0.75, 1.25)) + randaugment(n=3, m=7) + mixup(alpha=0.4, prob=0.5)",
    "flip_crop(scale=(0.5, 1), ratio=(0.75, 1.25), hflip=false) + autoaugment(svhn) "
    "+ cutout(p=0.5, size=0.25)",
    "trivialaugment + erasing(p=0.5, scale=(0.1, 0.3), ratio=(0.5, 2), mode=const) + cutmix "
    "+ flip_crop(ratio=(0.5, 2))",
    "flip_crop(ratio=(1, 1)) + augmix(severity=2, width=4, depth=-1, alpha=0.5, jsd=true, "
    "jsd_weight=6)",
    "imgaug(light) + autoaugment(policy=cifar10) + imgaug(heavy) + flip_crop(ratio=(1, 1))",
    "none",
])
def test_canonical_round_trips(text):
    components = parse_policy(text)
    written = canonical(components)
    assert parse_policy(written) == components
    assert canonical(parse_policy(written)) == written


def test_canonical_of_default_fractions_is_stable_to_six_digits():
    # 4/3, 1/3 and 1/0.3 are written with 6 significant digits (as make_spec records them)
    components = parse_policy("erasing")
    again = parse_policy(canonical(components))
    assert canonical(again) == canonical(components)
    assert again[0].ratio == pytest.approx(components[0].ratio, rel=1e-5)
    assert again[1].scale == pytest.approx(components[1].scale, rel=1e-5)
    assert again[1].ratio == pytest.approx(components[1].ratio, rel=1e-5)


def test_record_is_json_ready():
    assert RandAugment(n=3, m=7).record() == {"name": "randaugment", "n": 3, "m": 7}
    assert FlipCrop(hflip=False).record() == {"name": "flip_crop", "scale": [0.35, 1.0],
                                              "ratio": [0.75, 4 / 3], "hflip": False}


@pytest.mark.parametrize(("text", "names"), [
    ("mixup + randaugment", ["flip_crop", "randaugment", "mixup"]),
    ("cutmix + erasing + trivialaugment", ["flip_crop", "trivialaugment", "erasing", "cutmix"]),
    ("cutout + flip_crop(hflip=false)", ["flip_crop", "cutout"]),
    ("mixup + cutmix + autoaugment + flip_crop", ["flip_crop", "autoaugment", "mixup", "cutmix"]),
    # per-image components keep the written order
    ("imgaug(a) + autoaugment", ["flip_crop", "imgaug", "autoaugment"]),
    ("autoaugment + imgaug(a)", ["flip_crop", "autoaugment", "imgaug"]),
    ("augmix + imgaug(a) + imgaug(b) + randaugment",
     ["flip_crop", "augmix", "imgaug", "imgaug", "randaugment"]),
])
def test_components_run_in_stage_order(text, names):
    assert _names(text) == names


def test_flip_crop_takes_the_defaults_where_not_written():
    expected = FlipCrop(scale=(0.5, 0.9), hflip=False)
    assert parse_policy("randaugment", DEFAULTS)[0] == expected
    assert parse_policy("flip_crop", DEFAULTS) == [expected]
    assert parse_policy("none", DEFAULTS) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("flip_crop(hflip=true)", FlipCrop(scale=(0.5, 0.9), hflip=True)),
    # a written value equal to the class default still overrides the passed default
    ("flip_crop(scale=(0.35, 1))", FlipCrop(scale=(0.35, 1.0), hflip=False)),
    ("flip_crop(ratio=(1, 1))", FlipCrop(scale=(0.5, 0.9), ratio=(1.0, 1.0), hflip=False)),
    ("mixup + flip_crop(scale=(0.2, 0.4), hflip=true)",
     FlipCrop(scale=(0.2, 0.4), hflip=True)),
])
def test_written_flip_crop_arguments_override_only_themselves(text, expected):
    assert parse_policy(text, DEFAULTS)[0] == expected


@pytest.mark.parametrize(("text", "fragments"), [
    ("autoaug", ["unknown component 'autoaug'", f"accepted: {ACCEPTED_NAMES}"]),
    ("randaugment + Flip", ["unknown component 'Flip'", f"accepted: {ACCEPTED_NAMES}"]),
    ("randaugment(k=2)", ["randaugment has no argument 'k'", "accepted: ['n', 'm']"]),
    ("cutout(side=0.5)", ["cutout has no argument 'side'", "accepted: ['p', 'size']"]),
    ("trivialaugment(m=5)", ["trivialaugment has no argument 'm'", "accepted: none"]),
    ("randaugment(m=31)", ["randaugment m = 31", "less than or equal to 30"]),
    ("randaugment(m=-1)", ["randaugment m = -1", "greater than or equal to 0"]),
    ("randaugment(n=0)", ["randaugment n = 0", "greater than or equal to 1"]),
    ("randaugment(n=2.5)", ["randaugment n = 2.5", "valid integer"]),
    ("randaugment(n=0, m=31)", ["randaugment n = 0", "; randaugment m = 31"]),
    ("augmix(depth=0)", ["augmix depth = 0", "need -1 (random 1 to 3) or 1 to 10"]),
    ("augmix(severity=11)", ["augmix severity = 11", "less than or equal to 10"]),
    ("erasing(p=1.5)", ["erasing p = 1.5", "less than or equal to 1"]),
    ("erasing(mode=noise)", ["erasing mode = 'noise'", "'const', 'rand' or 'pixel'"]),
    ("flip_crop(scale=(0.9, 0.5))", ["flip_crop scale = (0.9, 0.5)", "low <= high"]),
    ("flip_crop(scale=(0, 0.5))", ["flip_crop scale = (0, 0.5)", "need 0 < low"]),
    ("flip_crop(ratio=(-1, 2))", ["flip_crop ratio = (-1, 2)", "need 0 < low"]),
    ("autoaugment(policy=mnist)", ["autoaugment policy = 'mnist'",
                                   "'imagenet', 'cifar10' or 'svhn'"]),
    ("cutout(size=-0.5)", ["cutout size = -0.5", "greater than 0"]),
    ("mixup(alpha=0)", ["mixup alpha = 0", "greater than 0"]),
    ("randaugment(n=2", ["cannot be read", "components joined by '+'"]),
    ("randaugment +", ["cannot be read"]),
    ("randaugment - mixup", ["'randaugment - mixup' is not a component", ACCEPTED_NAMES]),
    ("randaugment(m=x.y)", ["'x.y' is not a value"]),
    ("", ["a policy is a non-empty string", ACCEPTED_NAMES]),
    ("none + mixup", ["none cannot be combined with other components"]),
    ("randaugment + none", ["none cannot be combined with other components"]),
    ("none(p=1)", ["none takes no arguments"]),
    ("randaugment + mixup + randaugment(m=3)", ["randaugment appears twice"]),
    ("cutout + cutout(size=0.2)", ["cutout appears twice"]),
    ("augmix(jsd=true) + mixup", ["augmix(jsd=true) cannot be combined with mixup or cutmix"]),
    ("cutmix + augmix(jsd=True)", ["augmix(jsd=true) cannot be combined with mixup or cutmix"]),
    ("randaugment(2)", ["randaugment takes keyword arguments only: randaugment(n=..., m=...)"]),
    ("mixup(0.4)", ["mixup takes keyword arguments only: mixup(alpha=..., prob=...)"]),
    ("autoaugment(cifar10, svhn)", ["autoaugment takes keyword arguments only"]),
])
def test_policy_errors(text, fragments):
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_augmix_without_jsd_mixes():
    assert _names("augmix(jsd=false) + mixup + cutmix") == ["flip_crop", "augmix", "mixup",
                                                            "cutmix"]


def test_imgaug_pipelines_must_be_defined():
    with pytest.raises(PolicyError) as info:
        parse_policy("imgaug(heavy)", imgaug_pipelines={"strong", "light"})
    assert str(info.value) == ("imgaug(heavy): no pipeline of that name under "
                               "augmentation.imgaug; defined: ['light', 'strong']")
    assert _names("imgaug(light) + imgaug(strong)") == ["flip_crop", "imgaug", "imgaug"]
    assert parse_policy("imgaug(anything)")[1] == Imgaug(pipeline="anything")  # unchecked


@pytest.mark.parametrize("text", ["randaugment(m=5, m=9)", "autoaugment(cifar10, policy=svhn)"])
def test_an_argument_given_twice_is_an_error(text):
    with pytest.raises(PolicyError):
        parse_policy(text)


@pytest.mark.parametrize(("text", "name", "field", "value"), [
    ("flip_crop(hflip=false)", "flip_crop", "hflip", False),
    ("flip_crop(hflip=False)", "flip_crop", "hflip", False),
    ("flip_crop(hflip=true)", "flip_crop", "hflip", True),
    ("flip_crop(hflip=True)", "flip_crop", "hflip", True),
    ("augmix(jsd=TRUE)", "augmix", "jsd", True),
    ("augmix(depth=-1)", "augmix", "depth", -1),
    ("augmix(alpha=+0.5)", "augmix", "alpha", 0.5),
    ("flip_crop(scale=(0.5, 1))", "flip_crop", "scale", (0.5, 1.0)),
    ("flip_crop(scale=[0.5, 1])", "flip_crop", "scale", (0.5, 1.0)),
    ("erasing(ratio=(0.5, 2.0))", "erasing", "ratio", (0.5, 2.0)),
    ("erasing(mode=const)", "erasing", "mode", "const"),
    ("erasing(mode='rand')", "erasing", "mode", "rand"),
    ("imgaug(pipeline=light)", "imgaug", "pipeline", "light"),
    ("mixup(alpha=1e-1)", "mixup", "alpha", 0.1),
])
def test_argument_values(text, name, field, value):
    got = _argument(text, name, field)
    assert got == value
    assert type(got) is type(value)


def test_components_are_frozen():
    component = RandAugment()
    with pytest.raises(ValueError, match="frozen"):
        component.m = 5


def _params_error(overrides: dict, **replaced) -> str:
    """The error of conf/base's augmentation block with ``overrides`` merged in (key by
    key) and the blocks of ``replaced`` set as given."""
    with pytest.raises(ParameterError) as info:
        AugmentationParams.model_validate(base_raw(AugmentationParams, **overrides)
                                          | replaced)
    return str(info.value)


def test_params_unknown_policy_names_the_path_and_the_accepted_names():
    message = _params_error({"policy": "autoaug + mixup"})
    assert "augmentation.policy = 'autoaug + mixup': unknown component 'autoaug'" in message
    assert f"accepted: {ACCEPTED_NAMES}" in message


def test_params_bad_magnitude_names_the_path_and_the_range():
    message = _params_error({"policy": "randaugment(n=2, m=40)"})
    assert ("augmentation.policy = 'randaugment(n=2, m=40)': randaugment m = 40: Input "
            "should be less than or equal to 30") in message


def test_params_policy_with_an_undefined_imgaug_pipeline():
    message = _params_error({"policy": "imgaug(heavy)"}, imgaug={"light": ["Fliplr"]})
    assert "augmentation.policy = 'imgaug(heavy)'" in message
    assert "no pipeline of that name under augmentation.imgaug; defined: ['light']" in message
    assert "defined: []" in _params_error({"policy": "imgaug(heavy)"}, imgaug={})


def test_params_spec_takes_the_flip_crop_defaults():
    params = base_params(AugmentationParams, policy="randaugment(m=5)", hflip=False,
                         scale=[0.5, 1.0])
    assert params.spec().components == (
        {"name": "flip_crop", "scale": [0.5, 1.0], "ratio": [0.75, 4 / 3], "hflip": False},
        {"name": "randaugment", "n": 2, "m": 5})
    assert params.spec("flip_crop(hflip=true)").components[0]["hflip"] is True
    with pytest.raises(PolicyError, match=r"^augmentation\.compare\[1\] = 'randaug': "):
        params.spec("randaug", path="augmentation.compare[1]")


def test_cutout_must_leave_room_to_place_its_square():
    with pytest.raises(PolicyError, match=r"cutout size = 1.0: .*less than or equal to 0.9"):
        parse_policy("cutout(size=1.0)")
