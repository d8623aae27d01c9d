"""The catalogue: photos by content, labelled and queued imports, identify, decisions, export, stats,
on SQLite and PostgreSQL alike."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from jaguar_reid.catalog import Catalog
from jaguar_reid.data.competition import load_competition
from jaguar_reid.errors import CatalogError, DataError, ImageLoadError
from jaguar_reid.runs import Run


@pytest.fixture
def known(demo_root, tmp_path):
    """The demo's training photos with their labels (train.csv)."""
    return demo_root / "train" / "train", demo_root / "train.csv"


@pytest.fixture
def filled(tmp_path, catalog_run, known):
    """A SQLite catalogue holding the demo's training photos as known individuals."""
    catalog = Catalog.create(tmp_path / "c.db", [catalog_run], device="cpu")
    catalog.add(known[0], labels=known[1])
    return catalog


def _count(catalog):
    stats = catalog.stats()
    return stats["individuals"], stats["photos_known"] + stats["photos_queued"] + stats["photos_rejected"], stats["decisions"]


@pytest.mark.slow
def test_create_add_identify_decide_export(location, catalog_run, known, demo_root, tmp_path):
    where, store = location
    catalog = Catalog.create(where, [catalog_run], store=store, device="cpu")
    folder, labels = known
    report = catalog.add(folder, labels=labels, who="tester")
    n_train = len(pd.read_csv(labels))
    assert report.added == report.labelled == n_train and report.queued == 0 and len(report.new_individuals) == 6
    stored = list(catalog.store.root.rglob("*.png"))
    assert len(stored) == n_train and all(len(p.stem) == 64 for p in stored)  # named by content, not upload name

    answers = dict(pd.read_csv(demo_root / "test_labels.csv").values)
    results = catalog.identify(demo_root / "test" / "test", top_k=3)
    assert len(results) == len(answers)
    rank1 = np.mean([r.candidates[0].individual == answers[r.photo] for r in results])
    assert rank1 > 0.5  # 6 individuals: chance is about 0.17
    first = results[0]
    assert len(first.candidates) == 3
    assert [c.decision_score for c in first.candidates] == sorted((c.decision_score for c in first.candidates), reverse=True)
    assert all(0.0 <= c.probability <= 1.0 for c in first.candidates)
    best = first.candidates[0]  # the default individual score: the mean of its 3 best photos' similarities
    assert np.mean([p["similarity"] for p in best.photos]) == pytest.approx(best.score, abs=1e-5)
    assert (first.verdict == "known") == (first.candidates[0].decision_score >= first.threshold)

    queued = catalog.add(demo_root / "test" / "test")
    assert queued.queued == len(answers) and queued.labelled == 0
    photo = demo_root / "test" / "test" / results[0].photo
    record = catalog.decide(photo, as_name=answers[results[0].photo], who="tester")
    assert record["decision"] == "known" and json.loads(record["candidates"])[0]["individual"]
    assert json.loads(record["previous"]) == {"status": "queued", "individual_id": None}
    catalog.decide(demo_root / "test" / "test" / results[1].photo, new_name="Zorro")
    catalog.decide(demo_root / "test" / "test" / results[2].photo, reject=True)
    stats = catalog.stats()
    assert stats["individuals"] == 7 and stats["photos_rejected"] == 1 and stats["decisions"] == 3
    assert stats["photos_queued"] == len(answers) - 3 and stats["photos_known"] == n_train + 2
    log = catalog.decision_log()
    assert [d["decision"] for d in log] == ["reject", "new", "known"] and log[2]["who"] == "tester"

    exported = catalog.export(tmp_path / "export")
    competition = load_competition(exported.parent)
    assert len(competition.train) == n_train + 2 and "Zorro" in set(competition.train["ground_truth"])
    meta = pd.read_csv(exported.parent / "metadata.csv")
    assert set(meta["original_name"]) >= {results[0].photo, results[1].photo}


@pytest.mark.slow
def test_photo_already_in_the_catalogue_is_not_matched_with_itself(location, catalog_run, known):
    where, store = location
    catalog = Catalog.create(where, [catalog_run], store=store, device="cpu")
    folder, labels = known
    catalog.add(folder, labels=labels)
    photo = sorted(folder.glob("*.png"))[0]
    result = catalog.identify([photo])[0]
    assert all(p["original_name"] != photo.name for c in result.candidates for p in c.photos)


@pytest.mark.slow
def test_the_same_photo_twice_is_reported_not_duplicated(tmp_path, filled, known):
    catalog, folder = filled, known[0]
    before = _count(catalog)
    copies = tmp_path / "copies"
    copies.mkdir()
    original = sorted(folder.glob("*.png"))[0]
    shutil.copy(original, copies / "renamed.png")
    shutil.copy(original, copies / "renamed_again.png")
    report = catalog.add(copies)
    assert report.added == 0 and report.duplicates == [("renamed.png", original.name), ("renamed_again.png", original.name)]
    assert _count(catalog) == before


@pytest.mark.slow
def test_metadata_columns_are_stored(tmp_path, catalog_run, known):
    folder, labels = known
    names = pd.read_csv(labels)["filename"].tolist()
    pd.DataFrame({"filename": names[:2], "flank": ["left", "right"], "date": ["2024-05-01", ""],
                  "camera": ["C7", "C9"]}).to_csv(tmp_path / "meta.csv", index=False)
    catalog = Catalog.create(tmp_path / "c.db", [catalog_run], device="cpu")
    catalog.add(folder, labels=labels, metadata=tmp_path / "meta.csv")
    catalog.export(tmp_path / "out")
    meta = pd.read_csv(tmp_path / "out" / "metadata.csv", keep_default_na=False).set_index("original_name")
    assert meta.loc[names[0], "side"] == "left" and meta.loc[names[0], "date"] == "2024-05-01"
    assert meta.loc[names[1], "camera"] == "C9" and meta.loc[names[1], "date"] == ""


@pytest.mark.slow
def test_bad_input_is_one_line_and_changes_nothing(tmp_path, filled, known):
    catalog, folder = filled, known[0]
    before = _count(catalog)
    photos = tmp_path / "photos"
    photos.mkdir()
    good = sorted(folder.glob("*.png"))
    shutil.copy(good[0], photos / "fine.png")
    (photos / "notes.png").write_text("not an image")
    with pytest.raises(ImageLoadError, match=r"notes\.png: not an image"):
        catalog.add(photos, strict=True)  # today's all-or-nothing refusal, on request
    (photos / "notes.png").unlink()
    data = good[1].read_bytes()
    (photos / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"cut\.png: cannot read image"):
        catalog.add(photos, strict=True)
    (photos / "fine.png").unlink()
    with pytest.raises(DataError, match=r"photos: no readable photo; skipped cut\.png \(truncated PNG\)"):
        catalog.add(photos)  # nothing readable left: an error that names what was skipped
    (photos / "cut.png").unlink()
    shutil.copy(good[0], photos / "fine.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no photos in this folder"):
        catalog.add(tmp_path / "empty")
    (tmp_path / "labels.csv").write_text("filename,ground_truth\nfine.png,Abaeté\nmissing.png,Abaeté\n")
    with pytest.raises(DataError, match=r"labels\.csv line 3: names 'missing\.png'"):
        catalog.add(photos, labels=tmp_path / "labels.csv")
    assert _count(catalog) == before


@pytest.mark.slow
def test_decide_errors(filled, known, demo_root):
    catalog, labels = filled, known[1]
    photo = sorted((demo_root / "test" / "test").glob("*.png"))[0]
    with pytest.raises(CatalogError, match="not in the catalogue"):
        catalog.decide(photo, as_name="Abaeté")
    catalog.add([photo])
    existing = pd.read_csv(labels)["ground_truth"].iloc[0]
    with pytest.raises(CatalogError, match="already exists"):
        catalog.decide(photo, new_name=existing)
    with pytest.raises(CatalogError, match=f"did you mean '{existing}'"):
        catalog.decide(photo, as_name=existing[:-1])
    with pytest.raises(CatalogError, match="exactly one"):
        catalog.decide(photo, as_name=existing, reject=True)
    catalog.decide(photo, reject=True)
    with pytest.raises(CatalogError, match="already decided"):
        catalog.decide(photo, as_name=existing, expect_status="queued")
    assert catalog.stats()["decisions"] == 1


@pytest.mark.slow
def test_a_changed_run_is_refused(tmp_path, catalog_run, known, demo_root):
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(catalog_run, run)
    catalog = Catalog.create(tmp_path / "c.db", [run], device="cpu")
    catalog.add(*known[:1], labels=known[1])
    weights_file = Run(run).weights("best")  # the kept stage's weights
    weights = load_file(weights_file)
    name = next(k for k in weights if k.startswith("neck"))
    weights[name] = weights[name] * 1.01
    save_file(weights, weights_file)
    new_photo = sorted((demo_root / "test" / "test").glob("*.png"))[:1]
    with pytest.raises(CatalogError, match="embedded by model .* now holds model"):
        Catalog(tmp_path / "c.db").identify(new_photo)
    fingerprint = Catalog(tmp_path / "c.db").bind([run])
    assert Catalog(tmp_path / "c.db").stats()["models"][-1] == {
        "fingerprint": fingerprint, "runs": [str(run.resolve())], "active": True,
        "threshold": Catalog(tmp_path / "c.db").calibration.threshold}
    assert Catalog(tmp_path / "c.db").identify(new_photo)[0].candidates


@pytest.mark.slow
def test_calibrate_run_uses_the_held_out_identities(catalog_run, demo_root):
    from jaguar_reid.runs import Run
    from jaguar_reid.tasks import calibrate_run

    run = Run(catalog_run)
    assert len(run.split.unknown) > 0
    calibration = calibrate_run(run, device="cpu")
    assert run.open_set == calibration and not calibration.notes  # held-out identities: no simulation needed
    m = calibration.metrics
    assert m["n_unknown_queries"] == len(run.split.unknown) and m["n_known_queries"] == len(run.split.val)
    assert m["n_gallery_images"] == len(run.split.train) and m["n_gallery_individuals"] == 5
    assert m["known_called_new"] <= 0.05 + 1e-9


@pytest.mark.slow
def test_review_actions_merge_undo_rename(location, catalog_run, known, demo_root):
    where, store = location
    catalog = Catalog.create(where, [catalog_run], store=store, device="cpu")
    catalog.add(*known[:1], labels=known[1])
    photos = sorted((demo_root / "test" / "test").glob("*.png"))[:3]
    catalog.add(photos)
    queue = catalog.queue(limit=10)
    assert [q["original_name"] for q in queue] == [p.name for p in photos]
    assert catalog.queue(after=queue[0]["id"])[0]["id"] == queue[1]["id"]

    first = catalog.decide(f"#{queue[0]['id']}", new_name="Zorro", who="ana")
    catalog.decide(f"#{queue[1]['id']}", as_name="Zorro", who="ana")
    names = {i["name"]: i["photos"] for i in catalog.individuals()}
    assert names["Zorro"] == 2 and len(names) == 7
    target = sorted(n for n in names if n != "Zorro")[0]
    n_target = names[target]

    assert catalog.merge("Zorro", target, who="bo") == 2
    names = {i["name"]: i["photos"] for i in catalog.individuals()}
    assert "Zorro" not in names and names[target] == n_target + 2
    with pytest.raises(CatalogError, match="no individual named 'Zorro'"):
        catalog.decide(f"#{queue[2]['id']}", as_name="Zorro")
    merge_id = catalog.decision_log(limit=1)[0]["id"]
    with pytest.raises(CatalogError, match="decided again since"):  # the new-individual decision is older than the merge
        catalog.undo(first["id"])
    assert catalog.undo(merge_id, who="bo") == 2
    names = {i["name"]: i["photos"] for i in catalog.individuals()}
    assert names["Zorro"] == 2 and names[target] == n_target
    with pytest.raises(CatalogError, match="already undone"):
        catalog.undo(merge_id)

    added = next(d for d in catalog.decision_log() if d["decision"] == "known")
    catalog.undo(added["id"])  # the photo added to Zorro goes back to the queue
    catalog.undo(first["id"])   # and so does the first one: Zorro has no photos left
    assert {q["id"] for q in catalog.queue(limit=10)} == {q["id"] for q in queue}
    assert "Zorro" not in {i["name"] for i in catalog.individuals()}
    catalog.decide(f"#{queue[0]['id']}", new_name="Zorro")  # the name is free again
    assert catalog.identify([photos[0]], top_k=10)[0].candidates[-1].individual  # the gallery is read, and cached
    renamed = catalog.rename("Zorro", "Zorro II")
    assert catalog.individual("Zorro II")["photos"][0]["id"] == queue[0]["id"]
    with pytest.raises(CatalogError, match="already exists"):
        catalog.rename("Zorro II", target)
    assert [d["decision"] for d in catalog.decision_log()][:4] == ["rename", "new", "undo", "undo"]
    # the same open Catalog (a running review app) sees the rename: it never proposes the old name
    proposed = {c.individual for c in catalog.identify([photos[1]], top_k=10)[0].candidates}
    assert "Zorro II" in proposed and "Zorro" not in proposed
    assert catalog.decide(f"#{queue[1]['id']}", as_name="Zorro II")["was"] is None
    catalog.undo(catalog.decision_log(limit=1)[0]["id"])  # that decision: the photo is queued again
    catalog.rename("Zorro II", "Zorro III")
    with pytest.raises(CatalogError, match="renamed again since"):
        catalog.undo(renamed["id"])
    catalog.undo(catalog.decision_log(limit=1)[0]["id"])  # Zorro III -> Zorro II
    catalog.undo(renamed["id"])  # Zorro II -> Zorro
    assert "Zorro" in {i["name"] for i in catalog.individuals()}
    with pytest.raises(CatalogError, match="already undone"):
        catalog.undo(renamed["id"])


@pytest.mark.slow
def test_a_crop_box_is_stored_and_matching_reruns_on_it(filled, demo_root):
    from sqlalchemy import select

    from jaguar_reid.catalog.schema import embeddings

    catalog = filled
    photo = sorted((demo_root / "test" / "test").glob("*.png"))[0]
    catalog.add([photo])
    image = catalog.find_image(photo)

    def vector():
        with catalog.db.connect() as connection:
            return np.frombuffer(connection.scalar(select(embeddings.c.vector).where(embeddings.c.image_id == image["id"])), np.float32)

    whole, scores = vector(), [c.score for c in catalog.identify([photo])[0].candidates]
    box = (image["width"] * 0.2, image["height"] * 0.2, image["width"] * 0.8, image["height"] * 0.9)
    catalog.crop(photo, box)
    stored = catalog.find_image(photo)
    assert (stored["crop_left"], stored["crop_top"], stored["crop_right"], stored["crop_bottom"]) == pytest.approx(box)
    assert np.abs(vector() - whole).max() > 1e-3
    assert [c.score for c in catalog.identify([photo])[0].candidates] != scores
    with pytest.raises(CatalogError, match="not inside"):
        catalog.crop(photo, (0, 0, image["width"] + 5, 10 + image["height"] / 2))
    with pytest.raises(CatalogError, match="smaller than 16"):
        catalog.crop(photo, (0, 0, 8, 8))
    catalog.crop(photo, None)
    assert catalog.find_image(photo)["crop_left"] is None and np.abs(vector() - whole).max() < 1e-5


@pytest.mark.slow
def test_a_memory_card_imports_its_photos_and_lists_what_it_skipped(tmp_path, filled, known):
    """A camera's card: photos in sub-folders beside notes, a thumbnail cache, an empty file, a
    truncated JPEG, the labels CSV and a photo already in the catalogue."""
    from PIL import Image

    catalog, folder = filled, known[0]
    card = tmp_path / "DCIM"
    (card / "100CANON").mkdir(parents=True)
    good = sorted(folder.glob("*.png"))
    with Image.open(good[0]) as image:  # a new photo (not in the catalogue yet), with the camera's EXIF
        exif = Image.Exif()
        exif[0x0132] = "2026:11:30 05:42:10"
        image.convert("RGB").resize((90, 70)).save(card / "100CANON" / "IMG_0001.JPG", exif=exif)
    shutil.copy(good[1], card / "100CANON" / "IMG_0002.PNG")  # already catalogued: a duplicate
    (card / "notes.txt").write_text("day 3, camera 7")
    (card / "Thumbs.db").write_bytes(b"\x00\x01thumbnail cache")
    (card / "100CANON" / "IMG_0003.JPG").write_bytes(b"")
    jpeg = (card / "100CANON" / "IMG_0001.JPG").read_bytes()
    (card / "100CANON" / "IMG_0004.JPG").write_bytes(jpeg[: len(jpeg) // 2])
    shutil.copy(known[1], card / "labels.csv")
    report = catalog.add(card)
    assert report.added == 1 and report.queued == 1
    assert {s["file"]: s["reason"] for s in report.skipped} == {
        "notes.txt": "not an image", "Thumbs.db": "not an image", "labels.csv": "not an image",
        "100CANON/IMG_0003.JPG": "empty file", "100CANON/IMG_0004.JPG": "truncated JPEG",
        "100CANON/IMG_0002.PNG": f"duplicate of {good[1].name}"}
    added = catalog.find_image(card / "100CANON" / "IMG_0001.JPG")
    assert added["date"] == "2026-11-30T05:42:10"  # from EXIF, as no metadata CSV says otherwise
    results = catalog.identify(card)
    assert [r.photo for r in results] == ["100CANON/IMG_0001.JPG", "100CANON/IMG_0002.PNG"]
    assert {s["file"] for s in results.skipped} == {"notes.txt", "Thumbs.db", "labels.csv", "100CANON/IMG_0003.JPG",
                                                    "100CANON/IMG_0004.JPG"}


@pytest.mark.slow
def test_encounters_are_stored_with_the_photos_and_exported(location, catalog_run, known, tmp_path, demo_root):
    import pandas as pd

    where, store = location
    catalog = Catalog.create(where, [catalog_run], store=store, device="cpu")
    catalog.add(known[0], labels=known[1])
    tests = sorted((demo_root / "test" / "test").glob("*.png"))[:5]
    card = tmp_path / "card"
    for index, photo in enumerate(tests):
        folder = card / ("morning" if index < 3 else "evening")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / photo.name)
    with pytest.raises(DataError, match="time needs a number of minutes"):
        catalog.add(card, encounter_by="time:ten")
    assert _count(catalog)[1] == len(pd.read_csv(demo_root / "train.csv"))  # a bad rule writes nothing
    report = catalog.add(card, encounter_by="folder")
    assert report.added == 5 and report.encounters == 2
    rows = {r["original_name"]: r["encounter"] for r in catalog.repository.image_rows() if "/" in r["original_name"]}
    morning = {e for name, e in rows.items() if name.startswith("morning/")}
    evening = {e for name, e in rows.items() if name.startswith("evening/")}
    assert len(morning) == len(evening) == 1 and morning != evening
    name = catalog.individuals()[0]["name"]
    for photo in tests:
        catalog.decide(photo, as_name=name)
    catalog.export(tmp_path / "people", layout="folders")
    photos = pd.read_csv(tmp_path / "people" / "photos.csv", keep_default_na=False)
    assert set(photos.loc[photos["encounter"] != "", "encounter"]) == morning | evening
    individuals = pd.read_csv(tmp_path / "people" / "individuals.csv").set_index("name")
    n_photos = individuals.loc[name, "photos"]
    assert individuals.loc[name, "encounters"] == n_photos - 5 + 2  # its own photos, each its own, plus the two encounters


@pytest.mark.slow
def test_identify_by_encounter_gives_one_calibrated_answer_per_encounter(tmp_path, demo_root, known):
    import pandas as pd

    from jaguar_reid.config import load_config
    from jaguar_reid.tasks import calibrate_run
    from jaguar_reid.training.trainer import train

    from conftest import TINY

    table = pd.read_csv(demo_root / "train.csv")  # sightings of two photos each, so validation has encounters
    table["sighting"] = [f"{g}_{i // 2}" for i, g in enumerate(table.sort_values("ground_truth")["ground_truth"])]
    table.to_csv(tmp_path / "meta.csv", index=False)
    run = tmp_path / "run"
    train(load_config("lite0-cpu", TINY + ["split.group_column=sighting", f"split.metadata_csv={tmp_path / 'meta.csv'}"]),
          demo_root, run)
    calibration = calibrate_run(run, device="cpu")
    assert calibration.for_encounters().level == "encounter"
    catalog = Catalog.create(tmp_path / "c.db", [run], device="cpu")
    catalog.add(known[0], labels=known[1])
    card, tests = tmp_path / "card", sorted((demo_root / "test" / "test").glob("*.png"))[:5]
    for index, photo in enumerate(tests):
        folder = card / ("first" if index < 2 else "second")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / photo.name)
    answers = catalog.identify_encounters(card, "folder", top_k=3)
    assert [(a.photo, a.photos) for a in answers] == [("first", [f"first/{p.name}" for p in tests[:2]]),
                                                      ("second", [f"second/{p.name}" for p in tests[2:]])]
    assert all(a.threshold == calibration.for_encounters().threshold and len(a.candidates) == 3 for a in answers)
    assert all(a.says.startswith(("probably a new individual", "uncertain: ", a.candidates[0].individual)) for a in answers)
    import dataclasses

    photo_level = dataclasses.replace(calibration, encounter=None)  # as calibrated on a split without groups
    other = Catalog.create(tmp_path / "photo_level.db", [run], device="cpu", calibration=photo_level)
    other.add(known[0], labels=known[1])
    with pytest.raises(CatalogError, match="no encounter level"):
        other.identify_encounters(card, "folder")
