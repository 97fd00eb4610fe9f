"""Successive halving's arithmetic and ranking (visrec.core.augment.search)."""

import math

import pytest

from visrec.core.augment import Score, leaderboard, rank, rung_epochs, survivors


def _score(candidate: int, accuracy: float, rung: int = 1, cost: float = 10.0,
           loss: float = 1.0) -> Score:
    return Score(candidate=candidate, policy=f"policy {candidate}", rung=rung,
                 epochs=4 * 2 ** (rung - 1), balanced_accuracy=accuracy, val_loss=loss,
                 seconds=1.0, cost_us=cost)


def test_rungs_multiply_the_epochs_and_keep_the_best_share():
    assert rung_epochs(4, 2, 3) == [4, 8, 16]
    assert rung_epochs(1, 3, 2) == [1, 3]
    assert [survivors(n, 2) for n in (1, 2, 3, 7, 8)] == [1, 1, 2, 4, 4]
    assert survivors(7, 3) == 3


def test_rank_orders_by_accuracy_then_breaks_exact_ties_by_cost_then_loss():
    scores = [_score(0, 0.8, cost=50), _score(1, 0.9, cost=500), _score(2, 0.8, cost=5),
              _score(3, 0.8, cost=5, loss=0.5)]
    assert [s.candidate for s in rank(scores)] == [1, 3, 2, 0]


def test_a_tolerance_makes_close_scores_ties_that_the_cheaper_policy_wins():
    scores = [_score(0, 0.90, cost=900), _score(1, 0.895, cost=20), _score(2, 0.85, cost=1)]
    assert [s.candidate for s in rank(scores)] == [0, 1, 2]
    assert [s.candidate for s in rank(scores, tie_tolerance=0.01)] == [1, 0, 2]
    # The tie is with the best remaining score, not a chain down the list.
    assert [s.candidate for s in rank(scores, tie_tolerance=0.06)] == [2, 1, 0]


def test_scores_of_different_rungs_are_not_ranked_together():
    with pytest.raises(ValueError, match="different rungs"):
        rank([_score(0, 0.5), _score(1, 0.6, rung=2)])


def test_leaderboard_places_later_rungs_first_and_marks_the_winner():
    scores = [_score(0, 0.70), _score(1, 0.80), _score(2, 0.75), _score(3, 0.60),
              _score(1, 0.85, rung=2), _score(2, 0.88, rung=2)]
    table = leaderboard(scores)
    assert table["candidate"].tolist() == [2, 1, 0, 3]
    assert table["place"].tolist() == [1, 2, 3, 4]
    assert table["selected"].tolist() == [True, False, False, False]
    assert table["reached_rung"].tolist() == [2, 2, 1, 1]
    row = table.set_index("candidate").loc[2]
    assert (row["rung_1_balanced_accuracy"], row["rung_2_balanced_accuracy"]) == (0.75, 0.88)
    assert row["rung_2_epochs"] == 8 and row["seconds"] == 2.0
    assert math.isnan(table.set_index("candidate").loc[0, "rung_2_balanced_accuracy"])


def test_leaderboard_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no scores"):
        leaderboard([])
