"""Tests of visrec.core.augment.transforms (and .batch): the training transform of each
policy component, and the evaluation transform."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from visrec.core.augment import (
    AugmentationSpec,
    BatchAugment,
    LimitAspect,
    make_eval_transform,
    make_spec,
    make_train_transform,
)

SIZE = 32
RANDOM_POLICIES = ("flip_crop", "randaugment(n=2, m=9)")
POLICIES = ("none", *RANDOM_POLICIES)


def _spec(policy: str, hflip: bool = True,
          scale: tuple[float, float] = (0.35, 1.0)) -> AugmentationSpec:
    return make_spec(policy, hflip=hflip, scale=scale)


def _run(transform, image: Image.Image, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return transform(image)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("source_size", [(50, 30), (40, 40), (20, 64)])
def test_policy_output_shape_and_dtype(asymmetric_image, policy, source_size):
    image = asymmetric_image.resize(source_size)
    out = _run(make_train_transform(_spec(policy), SIZE), image, seed=0)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32
    assert tuple(out.shape) == (3, SIZE, SIZE)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0  # scaled, not normalised


@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_same_output(asymmetric_image, policy):
    transform = make_train_transform(_spec(policy), SIZE)
    torch.testing.assert_close(_run(transform, asymmetric_image, 7),
                               _run(transform, asymmetric_image, 7), rtol=0, atol=0)


@pytest.mark.parametrize("policy", RANDOM_POLICIES)
def test_random_policies_vary_with_the_seed(asymmetric_image, policy):
    transform = make_train_transform(_spec(policy), SIZE)
    outputs = [_run(transform, asymmetric_image, seed) for seed in range(4)]
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert not torch.equal(outputs[i], outputs[j]), (i, j)


def test_policy_none_is_the_eval_transform(asymmetric_image):
    train = make_train_transform(_spec("none"), SIZE)
    expected = make_eval_transform(SIZE)(asymmetric_image)
    for seed in range(3):
        assert torch.equal(_run(train, asymmetric_image, seed), expected)


def test_eval_transform_resizes_shorter_side_then_centre_crops():
    # Three vertical stripes, each 32 pixels wide: only the middle (green) one survives.
    stripes = np.zeros((32, 96, 3), dtype=np.uint8)
    stripes[:, :32, 0] = 255
    stripes[:, 32:64, 1] = 255
    stripes[:, 64:, 2] = 255
    out = make_eval_transform(16, interpolation="bilinear")(Image.fromarray(stripes))
    assert tuple(out.shape) == (3, 16, 16)
    torch.testing.assert_close(out[:, :, 2:-2].mean(dim=(1, 2)), torch.tensor([0.0, 1.0, 0.0]),
                               atol=1e-3, rtol=0)


def test_hflip_false_never_mirrors(asymmetric_image):
    # Red rises from left to right in the image: a crop keeps that unless it is mirrored.
    no_flip = make_train_transform(_spec("flip_crop", hflip=False, scale=(0.5, 1.0)), SIZE)
    flip = make_train_transform(_spec("flip_crop", hflip=True, scale=(0.5, 1.0)), SIZE)
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
    plain = _run(make_train_transform(_spec(policy), SIZE), asymmetric_image, 3)
    normalised = _run(make_train_transform(_spec(policy), SIZE, mean=mean, std=std),
                      asymmetric_image, 3)
    expected = (plain - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(normalised, expected)
    assert float(normalised.min()) < 0.0


def test_eval_normalisation(asymmetric_image):
    plain = make_eval_transform(SIZE)(asymmetric_image)
    normalised = make_eval_transform(SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(
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
    transform = make_train_transform(_spec("flip_crop", hflip=True, scale=(0.3, 1.0)), 24,
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


# AugMix and friends use torch ops: one intra-op thread is faster (see conftest)
ONE_THREAD = pytest.mark.usefixtures("one_torch_thread")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
CACHE_SIDE = 37
IMGAUG = {"light": [{"Affine": {"rotate": [-20, 20]}},
                    {"AdditiveGaussianNoise": {"scale": [0, 10]}}]}
IMAGE_STAGE = ("autoaugment(policy=imagenet)", "autoaugment(cifar10)", "autoaugment(policy=svhn)",
               "randaugment(n=2, m=9)", "trivialaugment", "augmix", "augmix(jsd=true)",
               "imgaug(light)")
OTHER_STAGES = ("flip_crop", "erasing(p=1)", "cutout(size=0.25)", "mixup", "cutmix(alpha=0.5)")
COMPONENT_POLICIES = ("none", *IMAGE_STAGE, *OTHER_STAGES)


def _views(policy: str) -> int:
    return 3 if "jsd=true" in policy else 1


def _train(policy: str, mean=None, std=None):
    return make_train_transform(make_spec(policy, IMGAUG), SIZE, mean, std,
                                 resolution=CACHE_SIDE)


def _seeded(function, argument, seed: int):
    torch.manual_seed(seed)
    random.seed(seed)  # timm's RandomErasing draws from Python's generator
    return function(argument)


def _images(count: int, high: int = 256, side: tuple[int, int] = (40, 44)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(count)
    return torch.randint(0, high, (count, 3, *side), generator=generator, dtype=torch.uint8)


@pytest.fixture(params=["pil", "tensor"])
def source(request, asymmetric_image):
    """The 40 x 40 test image as PIL, or as a uint8 C x H x W tensor."""
    if request.param == "pil":
        return asymmetric_image
    return torch.from_numpy(np.array(asymmetric_image)).permute(2, 0, 1).contiguous()


@ONE_THREAD
@pytest.mark.parametrize("policy", COMPONENT_POLICIES)
def test_component_repeats_under_a_seed(source, policy):
    transform = _train(policy, MEAN, STD)
    first, other, again = (_seeded(transform, source, seed) for seed in (7, 8, 7))
    assert first.dtype == torch.float32
    assert tuple(first.shape) == (3, SIZE, SIZE)
    assert torch.equal(first, again)
    assert torch.equal(first, other) == (policy == "none")


@ONE_THREAD
@pytest.mark.parametrize("policy", COMPONENT_POLICIES)
def test_sample_half_is_uint8_at_the_cache_side(source, policy):
    sample = _seeded(_train(policy).sample, source, 0)
    side = SIZE if policy == "none" else CACHE_SIDE  # none: no crop, the output side
    assert sample.dtype == torch.uint8
    assert tuple(sample.shape) == (3 * _views(policy), side, side)


@ONE_THREAD
@pytest.mark.parametrize("policy", IMAGE_STAGE)
def test_image_stage_components_vary_the_sample_with_the_seed(source, policy):
    sample, resized = _train(policy).sample, _train("flip_crop").sample(source)
    outputs = [_seeded(sample, source, seed) for seed in range(6)]
    assert len({output[-3:].numpy().tobytes() for output in outputs}) >= 4
    assert sum(torch.equal(output[-3:], resized) for output in outputs) <= 1
    assert torch.equal(outputs[0], _seeded(sample, source, 0))


@ONE_THREAD
@pytest.mark.parametrize("policy", OTHER_STAGES)
def test_other_components_only_resize_per_image(source, policy):
    sample, resized = _train(policy).sample, _train("flip_crop").sample(source)
    for seed in range(3):
        assert torch.equal(_seeded(sample, source, seed), resized)
    cached = _images(1, side=(CACHE_SIDE, CACHE_SIDE))[0]
    assert torch.equal(sample(cached), cached)  # the packed cache's side passes untouched


@ONE_THREAD
@pytest.mark.parametrize("policy", COMPONENT_POLICIES)
def test_batch_half_gives_views_times_n_images(policy):
    transform = _train(policy, MEAN, STD)
    samples = torch.stack([_seeded(transform.sample, image, seed)
                           for seed, image in enumerate(_images(4))])
    out = _seeded(transform.batch, samples, 0)
    assert out.dtype == torch.float32
    assert tuple(out.shape) == (4 * _views(policy), 3, SIZE, SIZE)
    assert torch.equal(out, _seeded(transform.batch, samples, 0))


@ONE_THREAD
def test_jsd_batch_is_clean_then_two_views_sharing_crop_and_flip():
    jsd, plain = _train("augmix(jsd=true)", MEAN, STD), _train("flip_crop", MEAN, STD)
    images = _images(4)
    samples = torch.stack([_seeded(jsd.sample, image, seed) for seed, image in enumerate(images)])
    clean = torch.stack([plain.sample(image) for image in images])
    assert torch.equal(samples[:, :3], clean)  # the clean view is only resized
    for sample in samples:
        assert not torch.equal(sample[3:6], sample[:3])
        assert not torch.equal(sample[6:], sample[3:6])
    out = _seeded(jsd.batch, samples, 5)
    for view in range(3):  # each view cropped and flipped as the flip_crop batch does
        expected = _seeded(plain.batch, samples[:, 3 * view:3 * view + 3].contiguous(), 5)
        assert torch.equal(out[4 * view:4 * view + 4], expected), view
    assert torch.equal(out[:4], _seeded(plain.batch, clean, 5))


@ONE_THREAD
def test_jsd_transform_called_on_one_image_gives_the_first_augmix_view(asymmetric_image):
    jsd = _train("augmix(jsd=true)")
    torch.manual_seed(3)
    views = jsd.batch(jsd.sample(asymmetric_image).unsqueeze(0))
    assert views.shape == (3, 3, SIZE, SIZE)
    got = _seeded(jsd, asymmetric_image, 3)
    assert torch.equal(got, views[1])
    assert not torch.equal(got, views[0])


@ONE_THREAD
@pytest.mark.parametrize(("policy", "plain"), [
    ("flip_crop + mixup(alpha=0.4)", "flip_crop"),
    ("cutmix + randaugment(n=1, m=5)", "randaugment(n=1, m=5)"),
    ("mixup + cutmix(prob=0.5) + erasing(p=1)", "erasing(p=1)"),
])
def test_mixing_is_not_in_the_per_image_transform(asymmetric_image, policy, plain):
    mixed, unmixed = _train(policy, MEAN, STD), _train(plain, MEAN, STD)
    for seed in range(3):
        assert torch.equal(_seeded(mixed, asymmetric_image, seed),
                           _seeded(unmixed, asymmetric_image, seed)), seed


def _erased_batch(policy: str, count: int = 16, seed: int = 0) -> torch.Tensor:
    # pixels <= 100 normalise below 0 ((100 / 255 - 0.5) / 0.25 < 0): only erasing gives 0
    transform = _train(policy, MEAN, STD)
    images = _images(count, high=101, side=(CACHE_SIDE, CACHE_SIDE))
    samples = torch.stack([_seeded(transform.sample, image, index)
                           for index, image in enumerate(images)])
    return _seeded(transform.batch, samples, seed)


def _zero_box(image: torch.Tensor) -> tuple[int, int] | None:
    """Height and width of the zeroed region, which must be one filled box."""
    zero = (image == 0).all(dim=0)
    if not zero.any():
        return None
    rows, columns = zero.any(dim=1).nonzero().flatten(), zero.any(dim=0).nonzero().flatten()
    height, width = int(rows[-1] - rows[0]) + 1, int(columns[-1] - columns[0]) + 1
    assert int((image == 0).sum()) == 3 * height * width  # one box, every channel, nothing else
    return height, width


@ONE_THREAD
def test_erasing_zeroes_one_box_of_the_configured_area():
    low, high, area = 0.1, 0.2, SIZE**2
    boxes = [_zero_box(image) for image in
             _erased_batch(f"erasing(p=1, scale=({low}, {high}), ratio=(0.5, 2), mode=const)")]
    assert None not in boxes
    for height, width in boxes:  # timm rounds each side to whole pixels
        assert (height - 0.5) * (width - 0.5) <= high * area, (height, width)
        assert (height + 0.5) * (width + 0.5) >= low * area, (height, width)
        assert 0.5 <= (height + 0.5) / (width - 0.5) and (height - 0.5) / (width + 0.5) <= 2
    assert len(set(boxes)) >= 8


@ONE_THREAD
@pytest.mark.parametrize(("size", "side"), [(0.25, 8), (0.4, 13), (0.5, 16), (0.9, 29)])
def test_cutout_zeroes_a_square_of_size_times_the_side(size, side):
    boxes = [_zero_box(image) for image in _erased_batch(f"cutout(size={size})")]
    assert boxes == [(side, side)] * len(boxes)


@ONE_THREAD
@pytest.mark.parametrize("policy", ["erasing(p=0, mode=const)", "cutout(p=0)"])
def test_erasing_with_p_zero_changes_nothing(policy):
    assert torch.equal(_erased_batch(policy), _erased_batch("flip_crop"))


@ONE_THREAD
def test_erasing_with_p_half_erases_some_images():
    boxes = [_zero_box(image) for image in _erased_batch("cutout(p=0.5)", count=32)]
    assert 6 <= sum(box is not None for box in boxes) <= 26
    assert {box for box in boxes if box is not None} == {(16, 16)}


@ONE_THREAD
def test_erasing_spares_the_clean_view_with_jsd():
    count = 8
    erased = _erased_batch("augmix(jsd=true) + erasing(p=1, scale=(0.1, 0.2), mode=const)",
                           count)
    plain = _erased_batch("augmix(jsd=true)", count)
    assert erased.shape == (3 * count, 3, SIZE, SIZE)
    assert torch.equal(erased[:count], plain[:count])
    assert all(_zero_box(image) is None for image in erased[:count])
    assert all(_zero_box(image) is not None for image in erased[count:])


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("size", [(300, 200), (200, 400), (64, 64)])
def test_eval_transform_leaves_images_up_to_two_to_one_as_plain_resize_and_crop(size):
    from torchvision.transforms import v2

    image = _noise(*size)
    plain = v2.Compose([v2.Resize(32, antialias=True), v2.CenterCrop(32), v2.ToImage(),
                        v2.ToDtype(torch.float32, scale=True)])
    assert torch.equal(make_eval_transform(32, interpolation="bilinear")(image), plain(image))


def test_eval_transform_of_an_extreme_strip_stays_small():
    """A 1 x 60,000 strip would be a 32 x 1.9 M image after the resize: the longer side is
    first cut to twice the shorter, so the result is the same 32 x 32 crop."""
    assert LimitAspect()(_noise(60_000, 1)).size == (2, 1)
    assert LimitAspect()(torch.zeros(3, 5000, 7, dtype=torch.uint8)).shape == (3, 14, 7)
    assert make_eval_transform(32)(_noise(60_000, 1)).shape == (3, 32, 32)


def test_limit_aspect_keeps_the_centre_of_a_long_image():
    """3:1: the crop keeps the middle 2:1 window, so the centre square is (nearly) the
    same as without the limit."""
    from torchvision.transforms import v2

    image = _noise(300, 100, seed=3).resize((300, 100))
    plain = v2.Compose([v2.Resize(50, antialias=True), v2.CenterCrop(50), v2.ToImage(),
                        v2.ToDtype(torch.float32, scale=True)])
    limited = make_eval_transform(50, interpolation="bilinear")(image)
    assert (limited - plain(image)).abs().mean() < 0.01
