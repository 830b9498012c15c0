"""Hand-computed cases for the retrieval and zero-shot metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imgfinder import evaluation as ev

RANKED = [7, 3, 9, 1, 4]
RELEVANT = {3, 4, 8}  # 8 is never retrieved


def test_precision_recall_capped_hit():
    assert ev.precision_at_k(RANKED, RELEVANT, 1) == 0.0
    assert ev.precision_at_k(RANKED, RELEVANT, 2) == 0.5
    assert ev.precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 5)
    assert ev.recall_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 3)
    assert ev.recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)
    # capped: two found in the top 2 would be perfect; one was
    assert ev.capped_recall_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 2)
    assert ev.capped_recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)
    assert ev.hit_rate_at_k(RANKED, RELEVANT, 1) == 0.0
    assert ev.hit_rate_at_k(RANKED, RELEVANT, 2) == 1.0


def test_precision_counts_missing_results_as_misses():
    assert ev.precision_at_k([3, -1, -1], {3}, 3) == pytest.approx(1 / 3)
    assert ev.capped_recall_at_k([3, -1, -1], {3}, 3) == 1.0


def test_average_precision_by_hand():
    # relevant at ranks 2 and 5: (1/2 + 2/5) / 3 relevant items
    assert ev.average_precision(RANKED, RELEVANT) == pytest.approx((0.5 + 0.4) / 3)
    assert ev.average_precision([1, 2, 3], {1, 2, 3}) == 1.0
    assert ev.average_precision([5, 6], {1}) == 0.0
    assert ev.average_precision([-1, 1], {1}) == pytest.approx(0.5)


def test_mean_average_precision_skips_queries_without_relevant_items():
    rankings = [[1, 2], [2, 1], [1, 2]]
    relevants = [{1}, {1}, set()]
    assert ev.mean_average_precision(rankings, relevants) == pytest.approx((1.0 + 0.5) / 2)


def test_ndcg_by_hand():
    dcg = 1 / math.log2(3) + 1 / math.log2(6)  # hits at ranks 2 and 5
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # three relevant fit in the top 5
    assert ev.ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(dcg / ideal)
    assert ev.ndcg_at_k([3, 4, 8], RELEVANT, 3) == pytest.approx(1.0)
    assert ev.ndcg_at_k([7], RELEVANT, 1) == 0.0


def test_ranking_metrics_averages_and_checks_lengths():
    out = ev.ranking_metrics([[1, 2], [2, 1]], [{1}, {1}], ks=(1,))
    assert out["queries"] == 2
    assert out["precision@1"] == 0.5
    assert out["hit_rate@1"] == 0.5
    assert out["mAP"] == pytest.approx(0.75)
    with pytest.raises(ValueError):
        ev.ranking_metrics([[1]], [{1}, {2}])


def test_rank_by_similarity_orders_and_maps_ids():
    items = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    order = ev.rank_by_similarity(np.array([[0, 1]], dtype=np.float32), items)
    assert order.tolist() == [[1, 2, 0]]
    ids = ev.rank_by_similarity(np.array([1, 0], dtype=np.float32), items, k=2, ids=[10, 20, 30])
    assert ids.tolist() == [[10, 30]]


def test_evaluate_text_to_image_with_a_fake_search():
    table = {"cat": [1, 2, 3], "dog": [3, 2, 1]}

    def search(queries, k):
        return [table[q][:k] for q in queries]

    out = ev.evaluate_text_to_image(search, ["cat", "dog"], [{1}, {1, 2}], k=3, ks=(1, 2))
    assert out["precision@1"] == pytest.approx(0.5)
    # dog: relevant at ranks 2, 3 → (1/2 + 2/3) / 2
    assert out["mAP"] == pytest.approx((1.0 + (0.5 + 2 / 3) / 2) / 2)


def test_vector_search_fn_wraps_an_embedding_function():
    items = np.eye(3, dtype=np.float32)
    search = ev.vector_search_fn(lambda qs: items[[int(q) for q in qs]], items, ids=[5, 6, 7])
    assert [list(r) for r in search(["2", "0"], 1)] == [[7], [5]]


def test_image_to_image_leave_one_out():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    out = ev.evaluate_image_to_image(vectors, ["a", "a", "b", "b"], ks=(1,))
    assert out["nn_accuracy"] == 1.0
    assert out["mAP"] == 1.0
    swapped = ev.evaluate_image_to_image(vectors, ["a", "b", "a", "b"], ks=(1,))
    assert swapped["nn_accuracy"] == 0.0


def test_zero_shot_accuracy():
    classes = np.array([[1, 0], [0, 1]], dtype=np.float32)
    images = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], dtype=np.float32)
    assert ev.zero_shot_accuracy(images, [0, 1, 1], classes) == pytest.approx(2 / 3)


def test_to_markdown_has_one_row_per_result_and_union_of_columns():
    table = ev.to_markdown({"en": {"mAP": 0.91234, "queries": 40.0}, "ru": {"mAP": 0.5}})
    lines = table.strip().splitlines()
    assert lines[0] == "| | mAP | queries |"
    assert lines[2] == "| en | 0.912 | 40 |"
    assert lines[3] == "| ru | 0.500 |  |"
