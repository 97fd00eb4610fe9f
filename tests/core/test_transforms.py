"""Tests of visrec.core.transforms: augmentation policies and the evaluation transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from visrec.core.transforms import (
    POLICIES,
    BatchAugment,
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
    # Red rises from left to right in the image: a crop keeps that unless it is mirrored.
    no_flip = build_train_transform(_spec("flip_crop", hflip=False, scale=(0.5, 1.0)), SIZE)
    flip = build_train_transform(_spec("flip_crop", hflip=True, scale=(0.5, 1.0)), SIZE)
    flipped = 0
    for seed in range(20):
        red = _run(no_flip, asymmetric_image, seed)[0]
        assert red[:, : SIZE // 2].mean() < red[:, SIZE // 2:].mean(), seed
        out = _run(flip, asymmetric_image, seed)  # same seed: same crop, then maybe a flip
        unflipped = _run(no_flip, asymmetric_image, seed)
        assert torch.equal(out, unflipped) or torch.equal(out, unflipped.flip(-1)), seed
        flipped += torch.equal(out, unflipped.flip(-1))
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


def test_batch_crops_follow_the_scale_and_stay_inside_the_image():
    augment = BatchAugment(32, crop=True, scale=(0.25, 0.5))
    torch.manual_seed(0)
    boxes = augment._boxes(2000, 37, 37)
    width, height = boxes[:, 3] - boxes[:, 1], boxes[:, 4] - boxes[:, 2]
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 37 + 1e-4).all()
    assert (boxes[:, 2] >= 0).all() and (boxes[:, 4] <= 37 + 1e-4).all()
    share = width * height / 37**2
    assert share.min() >= 0.25 - 1e-4 and share.max() <= 0.5 + 1e-4
    aspect = width / height
    assert aspect.min() >= 3 / 4 - 1e-4 and aspect.max() <= 4 / 3 + 1e-4
    assert torch.equal(boxes[:, 0], torch.arange(2000, dtype=torch.float32))


def test_batch_crop_of_the_whole_image_is_a_resize():
    # A box covering the image, resampled to the same side, returns the image itself.
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    augment = BatchAugment(16, crop=True, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out = augment(images)
    torch.testing.assert_close(out, images.float() / 255, atol=1e-6, rtol=0)


def test_two_halves_give_float_batches_repeatable_under_a_seed():
    transform = build_train_transform(_spec("flip_crop", hflip=True, scale=(0.3, 1.0)), 24,
                                      mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    images = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (30, 40, 3),
                                                                   dtype=np.uint8))
              for i in range(5)]
    torch.manual_seed(3)
    batch = transform.batch(torch.stack([transform.sample(image) for image in images]))
    assert batch.shape == (5, 3, 24, 24) and batch.dtype == torch.float32
    torch.manual_seed(3)
    again = transform.batch(torch.stack([transform.sample(image) for image in images]))
    assert torch.equal(batch, again)
