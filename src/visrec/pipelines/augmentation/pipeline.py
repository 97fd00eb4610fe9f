"""augmentation: the training policy, chosen by a search over candidates or named, and previews.

The search is a sweep in `kedro viz`: one namespaced sub-pipeline per candidate slot
(``augmentation_search.candidate_1`` ...) trains that candidate for the first rung;
``successive_halving`` trains the survivors of each rung longer; ``choose_policy`` writes
the leaderboard and the spec training rebuilds. Slots past the list of candidates, and
all of them when ``augmentation.search.enabled`` is false, return at once.
"""

from functools import partial

from kedro.pipeline import Node, Pipeline, node, pipeline

from visrec.params import SEARCH_SLOTS

from .nodes import (
    choose_policy,
    preview_augmentation,
    preview_candidates,
    score_candidate,
    successive_halving,
)

DATA = ["image_manifest", "image_cache", "ingestion_report", "balance_plan",
        "params:augmentation", "params:training", "params:seed"]


def _slot(index: int) -> Node:
    """The first-rung node of candidate slot ``index`` (0-based), in its own namespace."""
    namespace = f"augmentation_search.candidate_{index + 1}"
    scorer = partial(score_candidate, index)
    # Named and documented like the function (for kedro viz), but without __wrapped__, so
    # that signature checks see the partial's own parameters. Its annotations and globals
    # let Kedro read the type hints (typed `params:` validation) instead of warning.
    for attribute in ("__name__", "__qualname__", "__module__", "__doc__", "__annotations__",
                      "__globals__"):
        setattr(scorer, attribute, getattr(score_candidate, attribute))
    return node(scorer, inputs=DATA, outputs=f"{namespace}.rung_1", name="score_candidate",
                namespace=namespace)


def create_pipeline(**kwargs: object) -> Pipeline:
    """The augmentation pipeline."""
    first_rung = [f"augmentation_search.candidate_{i + 1}.rung_1" for i in range(SEARCH_SLOTS)]
    return pipeline([
        *(_slot(index) for index in range(SEARCH_SLOTS)),
        node(successive_halving, inputs=DATA + first_rung, outputs="augmentation_search_scores",
             name="successive_halving", namespace="augmentation_search"),
        node(choose_policy, inputs=["params:augmentation", "augmentation_search_scores"],
             outputs=["augmentation_spec", "augmentation_leaderboard",
                      "augmentation_leaderboard_chart"], name="choose_policy"),
        node(preview_candidates,
             inputs=["image_manifest", "image_cache", "ingestion_report", "params:augmentation",
                     "params:training.image_size", "params:seed"],
             outputs="augmentation_candidate_previews", name="preview_candidates",
             namespace="augmentation_search"),
        node(preview_augmentation,
             inputs=["image_manifest", "image_cache", "ingestion_report", "augmentation_spec",
                     "params:augmentation", "params:training.image_size", "params:seed"],
             outputs="augmentation_preview", name="preview_augmentation"),
    ])
