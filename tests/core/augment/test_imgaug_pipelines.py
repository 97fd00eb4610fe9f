"""Tests of visrec.core.augment.imgaug_pipelines: imgaug pipelines written as YAML lists."""

from __future__ import annotations

import pickle

import imgaug.augmenters as iaa
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, Dataset

from tests.params import base_raw
from visrec.core.augment import (
    ImgaugTransform,
    PolicyError,
    augmenter_names,
    make_augmenter,
    make_imgaug_pipeline,
)
from visrec.params import AugmentationParams, ParameterError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PIPELINE = """
- Fliplr: 0.5
- Affine: {rotate: [-20, 20], scale: {x: [0.8, 1.2], y: [0.9, 1.1]}}
- Sometimes: {p: 0.5, then_list: [GaussianBlur: {sigma: [0, 1.0]}], else_list: [Dropout: 0.1]}
- SomeOf: {n: [1, 2], children: [Flipud: 1.0, Cutout: {nb_iterations: 1}, Add: [-20, 20]]}
- OneOf: [Fliplr: 1.0, Flipud: 1.0, Noop]
- Rot90: {k: {choice: [0, 1, 3]}}
- Multiply
"""
NOISY = [{"Affine": {"rotate": [-30, 30]}}, {"AdditiveGaussianNoise": {"scale": [0, 20]}}]


def _by_hand(rotate=(-20, 20)) -> iaa.Sequential:
    return iaa.Sequential([
        iaa.Fliplr(0.5),
        iaa.Affine(rotate=rotate, scale={"x": (0.8, 1.2), "y": (0.9, 1.1)}),
        iaa.Sometimes(0.5, then_list=[iaa.GaussianBlur(sigma=(0, 1.0))],
                      else_list=[iaa.Dropout(0.1)]),
        iaa.SomeOf((1, 2), [iaa.Flipud(1.0), iaa.Cutout(nb_iterations=1), iaa.Add((-20, 20))]),
        iaa.OneOf([iaa.Fliplr(1.0), iaa.Flipud(1.0), iaa.Noop()]),
        iaa.Rot90(k=[0, 1, 3]),
        iaa.Multiply(),
    ])


def _outputs(pipeline, seed: int) -> list[np.ndarray]:
    images = np.random.default_rng(seed).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    pipeline.seed_(seed)
    return [pipeline(image=image) for image in images]


def _same(first: list[np.ndarray], second: list[np.ndarray]) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_yaml_pipeline_equals_the_same_pipeline_built_by_hand():
    built = make_imgaug_pipeline(yaml.safe_load(PIPELINE), "augmentation.imgaug.x")
    hand = _by_hand()
    assert str(built) == str(hand)
    for seed in range(3):
        out = _outputs(built, seed)
        assert _same(out, _outputs(hand, seed)), seed
        assert not any(np.array_equal(a, b) for a, b in zip(out, _outputs(built, seed + 10),
                                                             strict=True))


def test_a_list_where_a_range_belongs_gives_another_pipeline():
    # [-20, 20] as a Python list is imgaug's choice of two angles: the YAML range is not that
    built = make_imgaug_pipeline(yaml.safe_load(PIPELINE), "augmentation.imgaug.x")
    assert str(built) != str(_by_hand(rotate=[-20, 20]))
    assert not _same(_outputs(built, 0), _outputs(_by_hand(rotate=[-20, 20]), 0))


def _rotations(entry: dict) -> set[int]:
    """The quarter turns an augmenter gives an asymmetric square image, over 40 draws."""
    image = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    augmenter = make_augmenter(entry, "augmentation.imgaug.x[0]")
    augmenter.seed_(0)
    turns = set()
    for _ in range(40):
        out = augmenter(image=image)
        turns |= {k for k in range(4) if np.array_equal(out, np.rot90(image, k))}
    return turns


def test_two_element_list_is_a_range_and_choice_is_a_list():
    assert _rotations({"Rot90": {"k": [1, 3]}}) == {1, 2, 3}  # a range: 1, 2 or 3 turns
    assert _rotations({"Rot90": {"k": {"choice": [1, 3]}}}) == {1, 3}
    assert _rotations({"Rot90": 2}) == {2}  # one value: the first argument


def test_entry_forms():
    assert isinstance(make_augmenter("Fliplr", "p"), iaa.Fliplr)
    assert isinstance(make_augmenter({"Fliplr": None}, "p"), iaa.Fliplr)
    one_of = make_augmenter({"OneOf": ["Fliplr", {"Flipud": 1.0}]}, "p")
    assert [type(child) for child in one_of] == [iaa.Fliplr, iaa.Flipud]
    sometimes = make_augmenter({"Sometimes": {"p": 1.0, "then_list": "Flipud"}}, "p")
    image = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    assert np.array_equal(sometimes(image=image), image[::-1])


def test_augmenter_names():
    names = augmenter_names()
    assert {"Fliplr", "Affine", "Sequential", "SomeOf", "OneOf", "Sometimes"} <= set(names)
    assert names == sorted(names)
    assert all(issubclass(getattr(iaa, name), iaa.meta.Augmenter) for name in names)


@pytest.mark.parametrize(("entries", "fragments"), [
    ([], ["augmentation.imgaug.x: an imgaug pipeline is a non-empty list"]),
    ("Fliplr", ["augmentation.imgaug.x: an imgaug pipeline is a non-empty list"]),
    (["Fliplr", {"Nope": 1}], ["augmentation.imgaug.x[1]: unknown imgaug augmenter 'Nope'",
                               "did you mean Noop", "accepted: the augmenters of "
                               "imgaug.augmenters"]),
    (["Fliplr:1.0"], ["augmentation.imgaug.x[0]: unknown imgaug augmenter 'Fliplr:1.0'"]),
    ([{"Fliplr": 0.5, "Flipud": 0.5}], ["augmentation.imgaug.x[0] = {'Fliplr': 0.5, "
                                        "'Flipud': 0.5}: write an augmenter as Name"]),
    ([{"Affine": {"rotat": 1}}], ["augmentation.imgaug.x[0]: Affine(rotat=1) failed",
                                  "Affine accepts ['scale', 'translate_percent', "
                                  "'translate_px', 'rotate', 'shear', 'order', 'cval', "
                                  "'mode', 'fit_output', 'backend']"]),
])
def test_make_imgaug_pipeline_errors(entries, fragments):
    with pytest.raises(PolicyError) as info:
        make_imgaug_pipeline(entries, "augmentation.imgaug.x")
    for fragment in fragments:
        assert fragment in str(info.value)


def _params(policy: str, imgaug: dict) -> dict:
    """conf/base's augmentation block with ``policy`` and exactly the pipelines ``imgaug``."""
    return base_raw(AugmentationParams, policy=policy) | {"imgaug": imgaug}


def _params_error(imgaug: dict) -> str:
    with pytest.raises(ParameterError) as info:
        AugmentationParams.model_validate(_params("flip_crop", imgaug))
    return str(info.value)


def test_params_unknown_augmenter_names_the_path_and_the_accepted_values():
    message = _params_error({"light": ["Fliplr", {"Affine": {"rotate": [-5, 5]}},
                                       {"GausianBlur": {"sigma": [0, 1]}}]})
    assert ("augmentation.imgaug.light[2]: unknown imgaug augmenter 'GausianBlur'; did you "
            "mean GaussianBlur") in message
    assert "accepted: the augmenters of imgaug.augmenters (Fliplr, Affine" in message


@pytest.mark.parametrize(("imgaug", "path"), [
    ({"x": [{"Sometimes": {"p": 0.5, "then_list": [{"Blurr": {}}]}}]},
     "augmentation.imgaug.x[0].then_list[0]"),
    ({"x": [{"Sometimes": {"p": 0.5, "then_list": ["Fliplr"], "else_list": ["Nope"]}}]},
     "augmentation.imgaug.x[0].else_list[0]"),
    ({"x": ["Fliplr", {"OneOf": ["Fliplr", "Flipx"]}]}, "augmentation.imgaug.x[1].children[1]"),
    ({"ok": ["Fliplr"], "y": ["Fliplr", {"SomeOf": {"n": 1, "children": [
        "Flipud", {"OneOf": ["Noop", "Blurr"]}]}}]}, "augmentation.imgaug.y[1].children[1]."
                                                     "children[1]"),
])
def test_params_nested_unknown_augmenter_names_the_nested_path(imgaug, path):
    assert f"{path}: unknown imgaug augmenter" in _params_error(imgaug)


def test_params_bad_argument_names_the_path_and_the_accepted_arguments():
    message = _params_error({"x": [{"SomeOf": {"n": 1, "children": [
        "Flipud", {"Affine": {"rotat": 1}}]}}]})
    assert "augmentation.imgaug.x[0].children[1]: Affine(rotat=1) failed: TypeError" in message
    assert "Affine accepts ['scale', 'translate_percent', 'translate_px', 'rotate'" in message


def test_params_keep_valid_pipelines():
    params = AugmentationParams.model_validate(
        _params("imgaug(light)", {"light": NOISY, "unused": ["Fliplr"]}))
    assert params.spec().imgaug == {"light": NOISY}


def _image(channels: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (channels, 12, 20), generator=generator, dtype=torch.uint8)


def _seeded(transform: ImgaugTransform, image: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return transform(image)


@pytest.mark.parametrize(("entries", "expected"), [
    ([{"Fliplr": 1.0}], lambda image: image.flip(-1)),
    ([{"Flipud": 1.0}], lambda image: image.flip(-2)),
    ([{"Fliplr": 1.0}, {"Flipud": 1.0}], lambda image: image.flip(-1).flip(-2)),
])
def test_imgaug_transform_keeps_the_chw_layout(entries, expected):
    image = _image()  # 12 x 20: swapped axes would change the shape
    assert torch.equal(ImgaugTransform(entries, "augmentation.imgaug.x")(image), expected(image))


@pytest.mark.parametrize("channels", [1, 3])
def test_imgaug_transform_keeps_shape_and_dtype(channels):
    image = _image(channels)
    out = _seeded(ImgaugTransform(NOISY, "augmentation.imgaug.x"), image, 0)
    assert out.dtype == torch.uint8
    assert tuple(out.shape) == (channels, 12, 20)
    assert not torch.equal(out, image)


def test_imgaug_transform_follows_the_torch_seed():
    transform = ImgaugTransform(NOISY, "augmentation.imgaug.x")
    image = _image()
    first, other, again = (_seeded(transform, image, seed) for seed in (7, 8, 7))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.equal(_seeded(ImgaugTransform(NOISY, "p"), image, 7), first)  # a new one too


def test_imgaug_transform_draws_anew_for_each_image_under_one_seed():
    transform = ImgaugTransform(NOISY, "augmentation.imgaug.x")
    image = _image()
    torch.manual_seed(7)
    outputs = [transform(image) for _ in range(3)]
    assert not torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[1], outputs[2])


def test_imgaug_transform_reseeded_with_the_same_value_repeats():
    # as the torchvision steps of a training transform do after torch.manual_seed(seed)
    transform = ImgaugTransform(NOISY, "augmentation.imgaug.x")
    image = _image()
    assert torch.equal(_seeded(transform, image, 7), _seeded(transform, image, 7))


def test_imgaug_transform_survives_pickling():
    transform = ImgaugTransform(NOISY, "augmentation.imgaug.x")
    image = _image()
    expected = _seeded(transform, image, 3)
    restored = pickle.loads(pickle.dumps(transform))
    assert restored._pipeline is None  # rebuilt in the process that uses it
    assert (restored.entries, restored.path) == (NOISY, "augmentation.imgaug.x")
    assert torch.equal(_seeded(restored, image, 3), expected)
    assert not torch.equal(_seeded(restored, image, 4), expected)


class _Repeated(Dataset):
    """One image, ``count`` times, through a transform."""

    def __init__(self, image: torch.Tensor, count: int, transform: ImgaugTransform) -> None:
        self.image, self.count, self.transform = image, count, transform

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.image)


def _epoch(dataset: Dataset, seed: int) -> torch.Tensor:
    loader = DataLoader(dataset, batch_size=2, num_workers=2,
                        generator=torch.Generator().manual_seed(seed))
    return torch.cat(list(loader))  # batches 0, 2 from worker 0; 1, 3 from worker 1


def test_imgaug_transform_in_dataloader_workers():
    dataset = _Repeated(_image(), 8, ImgaugTransform(NOISY, "augmentation.imgaug.x"))
    first = _epoch(dataset, 5)
    assert first.shape == (8, 3, 12, 20) and first.dtype == torch.uint8
    assert torch.equal(_epoch(dataset, 5), first)
    assert not torch.equal(_epoch(dataset, 6), first)
    assert not torch.equal(first[0], first[2])  # each worker's first image: seeds differ
    assert len({image.numpy().tobytes() for image in first}) == 8
