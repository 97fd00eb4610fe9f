"""Tests of visrec.core.transforms: augmentation policies and the evaluation transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from visrec.core.transforms import (
    POLICIES,
    build_eval_transform,
    build_train_transform,
    make_spec,
)

SIZE = 32
RANDOM_POLICIES = ("flip_crop", "randaugment")


def _spec(policy: str, hflip: bool = True, scale: tuple[float, float] = (0.35, 1.0)) -> dict:
    return make_spec(policy, hflip=hflip, scale=scale, randaugment_ops=2,
                     randaugment_magnitude=9)


def _run(transform, image: Image.Image, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return transform(image)


def test_make_spec_records_the_policy():
    assert make_spec("randaugment", hflip=1, scale=(0.5, 1), randaugment_ops=3,
                     randaugment_magnitude=7) == {
        "policy": "randaugment", "hflip": True, "scale": [0.5, 1.0],
        "randaugment": {"num_ops": 3, "magnitude": 7}}


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match=r"augmentation\.policy = 'autoaug'") as info:
        _spec("autoaug")
    assert "['none', 'flip_crop', 'randaugment']" in str(info.value)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("source_size", [(50, 30), (40, 40), (20, 64)])
def test_policy_output_shape_and_dtype(asymmetric_image, policy, source_size):
    image = asymmetric_image.resize(source_size)
    out = _run(build_train_transform(_spec(policy), SIZE), image, seed=0)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32
    assert tuple(out.shape) == (3, SIZE, SIZE)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0  # scaled, not normalised


@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_same_output(asymmetric_image, policy):
    transform = build_train_transform(_spec(policy), SIZE)
    torch.testing.assert_close(_run(transform, asymmetric_image, 7),
                               _run(transform, asymmetric_image, 7), rtol=0, atol=0)


@pytest.mark.parametrize("policy", RANDOM_POLICIES)
def test_random_policies_vary_with_the_seed(asymmetric_image, policy):
    transform = build_train_transform(_spec(policy), SIZE)
    outputs = [_run(transform, asymmetric_image, seed) for seed in range(4)]
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert not torch.equal(outputs[i], outputs[j]), (i, j)


def test_policy_none_is_the_eval_transform(asymmetric_image):
    train = build_train_transform(_spec("none"), SIZE)
    expected = build_eval_transform(SIZE)(asymmetric_image)
    for seed in range(3):
        assert torch.equal(_run(train, asymmetric_image, seed), expected)


def test_eval_transform_resizes_shorter_side_then_centre_crops():
    # Three vertical stripes, each 32 pixels wide: only the middle (green) one survives.
    stripes = np.zeros((32, 96, 3), dtype=np.uint8)
    stripes[:, :32, 0] = 255
    stripes[:, 32:64, 1] = 255
    stripes[:, 64:, 2] = 255
    out = build_eval_transform(16, interpolation="bilinear")(Image.fromarray(stripes))
    assert tuple(out.shape) == (3, 16, 16)
    torch.testing.assert_close(out[:, :, 2:-2].mean(dim=(1, 2)), torch.tensor([0.0, 1.0, 0.0]),
                               atol=1e-3, rtol=0)


def test_hflip_false_never_mirrors(asymmetric_image):
    expected = build_eval_transform(SIZE)(asymmetric_image)
    mirrored = torch.flip(expected, dims=[-1])
    assert not torch.equal(expected, mirrored)
    no_flip = build_train_transform(_spec("flip_crop", hflip=False, scale=(1.0, 1.0)), SIZE)
    flip = build_train_transform(_spec("flip_crop", hflip=True, scale=(1.0, 1.0)), SIZE)
    flipped = 0
    for seed in range(20):
        # A full-area crop of a square image is the whole image: only a flip can change it.
        assert torch.equal(_run(no_flip, asymmetric_image, seed), expected), seed
        out = _run(flip, asymmetric_image, seed)
        assert torch.equal(out, expected) or torch.equal(out, mirrored), seed
        flipped += torch.equal(out, mirrored)
    assert 3 <= flipped <= 17  # the flip does happen, about half the time


@pytest.mark.parametrize("policy", POLICIES)
def test_normalisation(asymmetric_image, policy):
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    plain = _run(build_train_transform(_spec(policy), SIZE), asymmetric_image, 3)
    normalised = _run(build_train_transform(_spec(policy), SIZE, mean=mean, std=std),
                      asymmetric_image, 3)
    expected = (plain - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(normalised, expected)
    assert float(normalised.min()) < 0.0


def test_eval_normalisation(asymmetric_image):
    plain = build_eval_transform(SIZE)(asymmetric_image)
    normalised = build_eval_transform(SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(
        asymmetric_image)
    torch.testing.assert_close(normalised, plain * 2 - 1)
