"""Tests of visrec.core.augment.spec: the augmentation spec a policy string is recorded as."""

from __future__ import annotations

import json
import random
from dataclasses import asdict

import pytest
import torch

from visrec.core.augment import (
    AugmentationSpec,
    MixSpec,
    PolicyError,
    SearchChoice,
    make_spec,
    make_train_transform,
    parse_policy,
)

# AugMix and friends use torch ops: one intra-op thread is faster (see conftest)
ONE_THREAD = pytest.mark.usefixtures("one_torch_thread")
SIZE = 32
CACHE_SIDE = 37
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
IMGAUG = {"light": [{"Affine": {"rotate": [-20, 20]}},
                    {"AdditiveGaussianNoise": {"scale": [0, 10]}}]}


def _seeded(function, argument, seed: int):
    torch.manual_seed(seed)
    random.seed(seed)  # timm's RandomErasing draws from Python's generator
    return function(argument)


def _images(count: int, high: int = 256, side: tuple[int, int] = (40, 44)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(count)
    return torch.randint(0, high, (count, 3, *side), generator=generator, dtype=torch.uint8)


def test_make_spec_records_the_policy():
    spec = make_spec("randaugment(n=3, m=7)", hflip=1, scale=(0.5, 1))
    assert isinstance(spec, AugmentationSpec)
    assert spec.components == (
        {"name": "flip_crop", "scale": [0.5, 1.0], "ratio": [0.75, 4 / 3], "hflip": True},
        {"name": "randaugment", "n": 3, "m": 7})
    assert spec.policy == ("flip_crop(scale=(0.5, 1), ratio=(0.75, 1.33333), hflip=true) "
                           "+ randaugment(n=3, m=7)")
    assert spec.imgaug == {} and spec.search is None


def test_unknown_policy_is_an_error():
    with pytest.raises(PolicyError, match=r"augmentation\.policy = 'autoaug'") as info:
        make_spec("autoaug", hflip=True, scale=(0.35, 1.0))
    assert "['none', 'flip_crop', 'autoaugment', 'randaugment'" in str(info.value)


def test_spec_is_frozen():
    spec = make_spec("randaugment")
    with pytest.raises(ValueError, match="frozen"):
        spec.policy = "none"


@pytest.mark.parametrize(("policy", "expected"), [
    ("none", None),
    ("flip_crop + randaugment + erasing", None),
    ("mixup", {"mixup_alpha": 0.2, "cutmix_alpha": 0.0, "prob": 1.0, "switch_prob": 0.0}),
    ("cutmix(alpha=0.5, prob=0.3)",
     {"mixup_alpha": 0.0, "cutmix_alpha": 0.5, "prob": 0.3, "switch_prob": 0.0}),
    ("mixup(alpha=0.4, prob=0.6) + cutmix(prob=0.8)",
     {"mixup_alpha": 0.4, "cutmix_alpha": 1.0, "prob": 0.8, "switch_prob": 0.5}),
    ("cutmix(prob=0.2) + augmix + mixup(prob=0.9)",
     {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "prob": 0.9, "switch_prob": 0.5}),
])
def test_mix(policy, expected):
    mix = make_spec(policy).mix()
    if expected is None:
        assert mix is None
    else:
        assert isinstance(mix, MixSpec)
        assert asdict(mix) == expected


@ONE_THREAD
def test_mix_configures_timm_mixup():
    from timm.data import Mixup

    mixup = Mixup(**asdict(make_spec("mixup(alpha=0.4) + cutmix").mix()), num_classes=3)
    assert (mixup.mixup_alpha, mixup.cutmix_alpha, mixup.mix_prob, mixup.switch_prob) == (
        0.4, 1.0, 1.0, 0.5)
    torch.manual_seed(0)
    _, target = mixup(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]))
    assert target.shape == (4, 3)
    torch.testing.assert_close(target.sum(dim=1), torch.ones(4))


@ONE_THREAD
def test_views_and_single_view():
    spec = make_spec("augmix(severity=2, jsd=true) + erasing")
    assert spec.views == 3
    assert make_spec("augmix").views == 1
    assert make_spec("none").views == 1
    single = spec.single_view()
    assert single.views == 1
    assert single.policy == spec.policy.replace("jsd=true", "jsd=false")
    assert single.components[1] == spec.components[1] | {"jsd": False}
    assert single.components[::2] == spec.components[::2]
    assert spec.views == 3  # spec itself unchanged
    sample = make_train_transform(single, SIZE, resolution=CACHE_SIDE).sample
    assert _seeded(sample, _images(1)[0], 0).shape == (3, CACHE_SIDE, CACHE_SIDE)


@pytest.mark.parametrize(("policy", "expected"), [
    ("augmix(jsd=true, jsd_weight=6)", 6.0),
    ("augmix(jsd=true)", 12.0),
    ("augmix", None),
    ("randaugment", None),
    ("none", None),
])
def test_jsd_weight(policy, expected):
    assert make_spec(policy).jsd_weight == expected


@pytest.mark.parametrize(("spec", "expected"), [
    (make_spec("flip_crop", hflip=True), True),
    (make_spec("flip_crop", hflip=False), False),
    (make_spec("randaugment + flip_crop(hflip=true)", hflip=False), True),
    (make_spec("none"), False),
])
def test_hflip(spec, expected):
    assert spec.hflip is expected


@pytest.mark.parametrize("policy", [
    "randaugment(n=3, m=7) + mixup", "autoaugment(cifar10) + cutout(size=0.25)",
    "augmix(jsd=true) + erasing(p=0.5, mode=const)", "imgaug(light) + trivialaugment",
    "flip_crop(scale=(0.2, 0.8), hflip=false) + cutmix", "none",
])
def test_parts_rebuild_the_parsed_components(policy):
    spec = make_spec(policy, IMGAUG, scale=(0.3, 0.9), hflip=True)
    expected = parse_policy(policy, {"scale": (0.3, 0.9), "hflip": True}, set(IMGAUG))
    assert spec.parts() == expected
    for component in expected:
        assert spec.component(component.name) == component
    assert spec.component("mixup" if "mixup" not in policy else "cutmix") is None


def test_make_spec_keeps_only_the_used_imgaug_pipelines():
    pipelines = {**IMGAUG, "heavy": [{"Fliplr": 1.0}]}
    assert make_spec("imgaug(light)", pipelines).imgaug == IMGAUG
    assert make_spec("randaugment", pipelines).imgaug == {}
    with pytest.raises(PolicyError, match=r"^augmentation\.compare\[0\] = 'imgaug\(x\)': "
                                          r"imgaug\(x\): no pipeline .* defined: \['heavy', "
                                          r"'light'\]"):
        make_spec("imgaug(x)", pipelines, path="augmentation.compare[0]")


# --- JSON round trip: the catalog saves the spec, training rebuilds the transform from it ---

ROUND_TRIP_POLICIES = (
    "none",
    "flip_crop(scale=(0.3, 0.9), ratio=(0.5, 2), hflip=true)",
    "randaugment(n=3, m=7) + erasing(p=1, scale=(0.1, 0.2), mode=const) + mixup",
    "autoaugment(cifar10) + cutout(size=0.25)",
    "augmix(severity=2, jsd=true) + erasing(p=0.5)",
    "imgaug(light) + trivialaugment + cutmix(alpha=0.5)",
)


def _round_trip(spec: AugmentationSpec) -> AugmentationSpec:
    """``spec`` through JSON text, as the catalog writes and reads it."""
    return AugmentationSpec.from_json(json.loads(json.dumps(spec.to_json())))


@pytest.mark.parametrize("policy", ROUND_TRIP_POLICIES)
def test_json_round_trip_gives_an_equal_spec(policy):
    spec = make_spec(policy, IMGAUG, scale=(0.4, 1.0), hflip=True)
    data = spec.to_json()
    assert set(data) == {"policy", "components", "imgaug", "search"}
    again = _round_trip(spec)
    assert again == spec
    assert again.to_json() == data
    assert again.parts() == spec.parts()
    assert (again.views, again.jsd_weight, again.hflip, again.mix()) == (
        spec.views, spec.jsd_weight, spec.hflip, spec.mix())


def test_json_round_trip_keeps_the_search_choice():
    spec = make_spec("randaugment(n=2, m=9)").model_copy(
        update={"search": SearchChoice(candidate=1, written="randaugment(n=2, m=9)")})
    again = _round_trip(spec)
    assert again == spec
    assert again.search == SearchChoice(candidate=1, written="randaugment(n=2, m=9)")


def test_from_json_refuses_unknown_keys():
    data = make_spec("randaugment").to_json() | {"hflip": True}
    with pytest.raises(ValueError, match="hflip"):
        AugmentationSpec.from_json(data)


@ONE_THREAD
@pytest.mark.parametrize("policy", ROUND_TRIP_POLICIES)
def test_transform_of_the_round_tripped_spec_augments_identically(policy):
    spec = make_spec(policy, IMGAUG, scale=(0.4, 1.0), hflip=True)
    original = make_train_transform(spec, SIZE, MEAN, STD, resolution=CACHE_SIDE)
    rebuilt = make_train_transform(_round_trip(spec), SIZE, MEAN, STD, resolution=CACHE_SIDE)
    images = _images(4)
    for seed in (0, 1):
        first = torch.stack([_seeded(original.sample, image, seed + i)
                             for i, image in enumerate(images)])
        again = torch.stack([_seeded(rebuilt.sample, image, seed + i)
                             for i, image in enumerate(images)])
        assert torch.equal(first, again), seed
        batch = _seeded(original.batch, first, seed)
        assert torch.equal(batch, _seeded(rebuilt.batch, again, seed)), seed
        assert batch.shape == (4 * spec.views, 3, SIZE, SIZE)
    # the seed matters: the comparison above is not between two constant outputs
    if policy != "none":
        assert not torch.equal(_seeded(original, images[0], 0), _seeded(original, images[0], 1))
    assert torch.equal(_seeded(original, images[0], 5), _seeded(rebuilt, images[0], 5))
