"""Open-set identification on arrays: no database, no model."""

import numpy as np
import pytest

from jaguar_reid.catalog import EmbeddingIndex, Gallery, identify
from jaguar_reid.evaluation.open_set import OpenSetCalibration
from jaguar_reid.postprocess import l2_normalize


def _gallery(seed: int = 0, individuals: int = 6, photos: int = 4, dim: int = 16):
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((individuals, dim)))
    names = np.repeat([f"id{i}" for i in range(individuals)], photos).astype(object)
    vectors = l2_normalize(np.repeat(centres, photos, axis=0) + 0.3 * rng.standard_normal((individuals * photos, dim)))
    photos_ = [{"sha256": f"{i:064x}", "original_name": f"{i}.jpg", "path": f"store/{i}.jpg"} for i in range(len(names))]
    return Gallery(EmbeddingIndex(vectors), names, photos_), centres


def _calibration(threshold: float) -> OpenSetCalibration:
    return OpenSetCalibration("mean_top_k", 3, "none", threshold, 0.05, [0.0, 1.0], [0.0, 1.0])


def test_each_query_gets_its_own_individual_first_and_best_photos_of_it():
    gallery, centres = _gallery()
    answers = identify(gallery, centres, _calibration(0.0), top_k=3)
    assert [individual for _, individual, _ in answers] == [f"id{i}" for i in range(len(centres))]
    verdict, _, candidates = answers[2]
    assert verdict == "known" and len(candidates) == 3
    assert [c.decision_score for c in candidates] == sorted((c.decision_score for c in candidates), reverse=True)
    best = candidates[0]  # its photos are its own, best first, and the score is the mean of the 3 best
    assert {gallery.individuals[int(p["original_name"].split(".")[0])] for p in best.photos} == {"id2"}
    assert np.mean([p["similarity"] for p in best.photos]) == pytest.approx(best.score, abs=1e-6)


def test_the_verdict_does_not_depend_on_top_k():
    gallery, centres = _gallery(1)
    threshold = float(np.median([c[2][0].decision_score for c in identify(gallery, centres, _calibration(0.0), top_k=1)]))
    verdicts = {k: [(v, i) for v, i, _ in identify(gallery, centres, _calibration(threshold), top_k=k)] for k in (1, 2, 6)}
    assert verdicts[1] == verdicts[2] == verdicts[6]
    assert {v for v, _ in verdicts[1]} == {"known", "new"}  # the threshold splits them: the comparison is not vacuous
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        identify(gallery, centres, _calibration(0.0), top_k=0)


def test_a_query_that_is_a_gallery_photo_is_not_matched_with_itself():
    gallery, _ = _gallery(2)
    query = gallery.vectors.vectors[5:6]
    _, _, candidates = identify(gallery, query, _calibration(0.0), top_k=6, query_sha256=[gallery.photos[5]["sha256"]])[0]
    assert all(p["sha256"] != gallery.photos[5]["sha256"] for c in candidates for p in c.photos)
    _, _, plain = identify(gallery, query, _calibration(0.0), top_k=6)[0]
    assert plain[0].photos[0]["sha256"] == gallery.photos[5]["sha256"]  # without the hash it finds itself first


def test_chunks_give_the_same_answers_as_one_block():
    gallery, centres = _gallery(3)
    queries = l2_normalize(np.vstack([centres, centres + 0.5]))
    whole = identify(gallery, queries, _calibration(0.3), top_k=4, chunk=len(queries))
    chunked = identify(gallery, queries, _calibration(0.3), top_k=4, chunk=3)
    assert [(v, i, [c.individual for c in cs], [c.score for c in cs]) for v, i, cs in whole] == \
           [(v, i, [c.individual for c in cs], [c.score for c in cs]) for v, i, cs in chunked]


def test_one_wording_for_the_three_levels_of_a_verdict():
    from jaguar_reid.catalog import Candidate, Identification

    def said(verdict, probability):
        result = Identification("a.jpg", None, verdict, "Bororo" if verdict == "known" else None, 0.5,
                                [Candidate("Bororo", 0.9, 0.9, probability, []), Candidate("Ipepo", 0.5, 0.5, 0.01, [])])
        return result.level, result.says, result.to_json()["says"]

    assert said("known", 0.82) == ("known", "Bororo (p 0.82)", "Bororo (p 0.82)")
    assert said("known", 0.10)[:2] == ("uncertain", "uncertain: Bororo p 0.10, compare closely")
    assert said("new", 0.02)[:2] == ("new", "probably a new individual (best: Bororo p 0.02)")


def test_an_encounter_pools_its_photos_evidence_into_one_answer():
    from jaguar_reid.catalog.gallery import identify_encounters

    gallery, centres = _gallery(4)
    rng = np.random.default_rng(5)
    # encounter "e1": three noisy photos of id1 (one of them looks more like id2); "e2": one photo of id3
    photos = l2_normalize(np.vstack([centres[1] + 0.2 * rng.standard_normal(16), centres[1] + 0.2 * rng.standard_normal(16),
                                     0.6 * centres[1] + centres[2], centres[3]]))
    answers = identify_encounters(gallery, photos, ["e1", "e1", "e1", "e2"], _calibration(0.0), top_k=3)
    assert [(e, members, individual) for e, members, _, individual, _ in answers] == [("e1", [0, 1, 2], "id1"), ("e2", [3], "id3")]
    single = identify(gallery, photos[2:3], _calibration(0.0), top_k=1)[0]
    assert single[1] == "id2"  # alone, the odd photo is called id2: the encounter's other photos outvote it
    pooled = answers[0][4][0].score  # the encounter's score is the mean of its photos' scores for that individual
    per_photo = [next(c.score for c in identify(gallery, photos[i:i + 1], _calibration(0.0), top_k=6)[0][2] if c.individual == "id1")
                 for i in range(3)]
    assert pooled == pytest.approx(np.mean(per_photo), abs=1e-5)
