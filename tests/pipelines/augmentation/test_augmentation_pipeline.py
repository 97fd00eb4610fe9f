"""The augmentation pipeline records the policy and previews it."""

import pytest
from matplotlib.figure import Figure
from PIL import Image

from tests.params import base_params
from tests.pipelines.helpers import only, run_pipeline
from visrec.core.augment import SearchChoice, make_train_transform
from visrec.params import SEARCH_SLOTS, AugmentationParams
from visrec.pipelines.augmentation import create_pipeline
from visrec.pipelines.class_balance import create_pipeline as class_balance
from visrec.pipelines.ingestion import create_pipeline as ingestion

UPSTREAM = ["image_manifest", "image_cache", "ingestion_report", "balance_plan"]


def _params(**overrides: object) -> AugmentationParams:
    """The ``augmentation`` block: mirrored crops of 35-100% of the image, no search, and
    ``overrides``."""
    plain = {"hflip": True, "scale": (0.35, 1.0), "search": {"enabled": False}}
    return base_params(AugmentationParams, **(plain | overrides))


def _upstream(tiny_params) -> dict:
    before = ingestion() + class_balance()
    catalog = run_pipeline(before, only(tiny_params, before))
    return {name: catalog[name].load() for name in UPSTREAM}


@pytest.mark.parametrize("policy", ["none", "flip_crop", "randaugment(n=2, m=9)"])
def test_spec_rebuilds_transform_and_preview_has_a_row_per_image(tiny_params, policy):
    params = _params(policy=policy, preview_images=3, preview_repeats=2)
    pipeline = create_pipeline()
    catalog = run_pipeline(pipeline, only(tiny_params, pipeline) | _upstream(tiny_params) | {
        "params:augmentation": params})
    spec = catalog["augmentation_spec"].load()
    assert spec == params.spec()
    names = [component["name"] for component in spec.components]
    assert names[-1:] == ([] if policy == "none" else [policy.split("(")[0]])
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    out = make_train_transform(spec, 24)(image)
    assert out.shape == (3, 24, 24)  # the recorded spec rebuilds a working transform
    figure = catalog["augmentation_preview"].load()
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 3 * (1 + 2)  # rows x (original + copies)
    assert catalog["augmentation_leaderboard"].load().empty  # no search
    assert list(catalog["augmentation_candidate_previews"].load()) == ["policy"]


def test_the_search_halves_the_candidates_and_training_gets_the_winner(tiny_params):
    candidates = ["flip_crop", "imgaug(light)", "flip_crop + mixup(alpha=0.2)"]
    params = _params(
        policy="none", hflip=False, preview_images=2, preview_repeats=1,
        imgaug={"light": [{"Affine": {"rotate": [-10, 10]}}]},
        search={"enabled": True, "candidates": candidates, "epochs": 1, "rungs": 2,
                "subset": 0.5})
    pipeline = create_pipeline()
    catalog = run_pipeline(pipeline, only(tiny_params, pipeline) | _upstream(tiny_params) | {
        "params:augmentation": params})
    slots = [catalog[f"augmentation_search.candidate_{i + 1}.rung_1"].load()
             for i in range(SEARCH_SLOTS)]
    assert [s["candidate"] for s in slots[:3]] == [0, 1, 2]
    assert all(s["epochs"] == 1 and 0 <= s["balanced_accuracy"] <= 1 for s in slots[:3])
    assert all(s == {"slot": i + 3, "skipped": "3 candidates"} for i, s in enumerate(slots[3:]))
    table = catalog["augmentation_leaderboard"].load()
    assert sorted(table["written"]) == sorted(candidates)
    assert table["reached_rung"].tolist() == [2, 2, 1]  # ceil(3 / 2) go on to rung 2
    assert table["rung_2_epochs"].iloc[0] == 2
    assert table["selected"].tolist() == [True, False, False]
    spec = catalog["augmentation_spec"].load()
    winner = table["written"].iloc[0]
    assert spec.search == SearchChoice(candidate=candidates.index(winner), written=winner)
    assert spec.model_copy(update={"search": None}) == params.spec(winner)
    previews = catalog["augmentation_candidate_previews"].load()
    assert list(previews) == ["candidate_1", "candidate_2", "candidate_3"]
    assert isinstance(catalog["augmentation_leaderboard_chart"].load(), Figure)


def test_the_search_needs_a_validation_split(tiny_params):
    no_val = tiny_params | {"params:ingestion": tiny_params["params:ingestion"].model_copy(
        update={"val_fraction": 0.0})}
    params = _params(search={"enabled": True, "candidates": ["flip_crop", "trivialaugment"],
                             "epochs": 1, "rungs": 1})
    pipeline = create_pipeline()
    with pytest.raises(Exception, match=r"needs a validation split.*val_fraction"):
        run_pipeline(pipeline, only(no_val, pipeline) | _upstream(no_val) | {
            "params:augmentation": params})
