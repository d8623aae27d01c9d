"""The review app end to end in a real headless Chromium (the system's, driven by Playwright):
upload, review with keyboard and mouse, confirm, new individual, undo, skip, reject, merge, export.
The catalogue's contents are checked after each step. Saves a screenshot of the review page
(into ``JAGUAR_REID_SCREENSHOTS`` if set, e.g. docs/images for the README)."""

import json
import os
import shutil
import socket
import threading
import time
import zipfile
from pathlib import Path

import pytest

from jaguar_reid.app import create_app
from jaguar_reid.catalog import Catalog

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs the system chromium (apt-get install chromium)")


@pytest.fixture
def server(tmp_path, catalog_run, demo_root):
    import uvicorn

    path = tmp_path / "catalog.db"
    catalog = Catalog.create(path, [catalog_run], device="cpu")
    catalog.add(demo_root / "train" / "train", labels=demo_root / "train.csv", who="setup")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(path, device="cpu", who="tester")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", path
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        yield context.new_page()
        browser.close()


def _state(path):
    catalog = Catalog(path)
    return catalog.stats(), catalog.decision_log()


@pytest.mark.slow
def test_review_session(server, page, demo_root, tmp_path):
    base, path = server
    photos = sorted((demo_root / "test" / "test").glob("*.png"))[:4]

    notes = tmp_path / "notes.txt"
    notes.write_text("camera 7, day 3")
    page.goto(f"{base}/history")
    assert "No decisions yet" in page.text_content("#no-decisions")  # an empty page says what to do next
    page.goto(f"{base}/upload")
    page.set_input_files("#photos", [str(p) for p in photos] + [str(notes)])
    page.click("#upload-button")
    page.wait_for_url("**/review?message=*")
    message = page.text_content(".message")  # the good photos go in, the others are listed with the reason
    assert "4 photo(s) queued" in message and "not added: notes.txt (not an image)" in message
    stats, _ = _state(path)
    assert stats["photos_queued"] == 4

    _save_screenshot(page, tmp_path)
    # zoom with the wheel on the photo under review
    page.hover("#query-photo")
    page.mouse.wheel(0, -300)
    assert "scale(" in page.get_attribute("#query-photo", "style")

    # crop the photo under review to the middle of the animal: stored, and matching reruns on it
    page.dblclick("#query-photo")
    cropped_id = int(page.get_attribute(".review", "data-image-id"))
    before = Catalog(path).image(cropped_id)
    box = page.locator("#query-photo").bounding_box()
    page.click("#crop-button")
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.7, steps=5)
    with page.expect_navigation():
        page.mouse.up()
    after = Catalog(path).image(cropped_id)
    assert 0 < after["crop_left"] < after["crop_right"] < before["width"] and 0 < after["crop_top"] < after["crop_bottom"] < before["height"]
    assert "matching on the crop" in page.text_content("#crop-form")

    first = page.get_attribute('.candidate[data-rank="1"]', "data-individual")
    first_photo = page.text_content(".query h2")
    with page.expect_navigation():
        page.keyboard.press("1")  # this is candidate 1
    stats, log = _state(path)
    assert log[0]["decision"] == "known" and log[0]["individual"] == first and log[0]["original_name"] == first_photo
    assert log[0]["who"] == "tester" and stats["photos_queued"] == 3

    verdict = page.text_content("#verdict")  # one wording, led by the calibrated probability
    level = page.get_attribute("#verdict", "data-level")
    assert {"known": " (p ", "uncertain": "uncertain: ", "new": "probably a new individual (best: "}[level] in verdict
    shown = {c.get_attribute("data-individual") for c in page.query_selector_all(".candidate")}
    others = sorted({i["name"] for i in Catalog(path).individuals()} - shown)
    if others:  # an individual outside the top candidates: typed into the search box, with completion
        assigned_photo = page.text_content(".query h2")
        page.keyboard.press("a")
        page.keyboard.type(others[0])
        with page.expect_navigation():
            page.click("#assign-button")
        stats, log = _state(path)
        assert log[0]["individual"] == others[0] and log[0]["original_name"] == assigned_photo
        assert json.loads(log[0]["candidates"])[0]["individual"] in shown  # logged with what the page showed
        with page.expect_navigation():
            page.keyboard.press("u")

    page.keyboard.press("n")
    page.keyboard.type("Zorro")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # a new individual
    stats, log = _state(path)
    assert log[0]["decision"] == "new" and log[0]["individual"] == "Zorro" and stats["individuals"] == 7

    with page.expect_navigation():
        page.keyboard.press("u")  # undo it
    stats, log = _state(path)
    assert log[0]["decision"] == "undo" and stats["individuals"] == 6 and stats["photos_queued"] == 3

    shown = page.text_content(".query h2")
    with page.expect_navigation():
        page.keyboard.press("s")  # skip: the next photo comes up, nothing is written
    assert page.text_content(".query h2") != shown and len(_state(path)[1]) == len(log)

    with page.expect_navigation():
        page.click("#reject-button")
    stats, log = _state(path)
    assert log[0]["decision"] == "reject" and stats["photos_rejected"] == 1

    individuals = sorted(i["name"] for i in Catalog(path).individuals())
    source, target = individuals[0], individuals[1]
    page.goto(f"{base}/individuals/{source}")
    page.select_option("#merge-target", target)
    page.check("#merge-confirm")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#merge-button")
    page.wait_for_url("**/individuals/*?message=*")
    assert target in page.text_content("#individual-name")
    assert source not in {i["name"] for i in Catalog(path).individuals()}

    page.goto(f"{base}/history")
    page.click('tr[data-decision="merge"] button.undo')
    page.wait_for_url("**/history?message=*")
    assert source in {i["name"] for i in Catalog(path).individuals()}

    page.goto(f"{base}/export")
    with page.expect_download() as download:
        page.click("#export-zip")
    archive = tmp_path / "catalogue.zip"
    download.value.save_as(archive)
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
        train_csv = opened.read("train.csv").decode()
    assert "metadata.csv" in names and train_csv.count("\n") == Catalog(path).stats()["photos_known"] + 1

    # an encounter (two photos from one folder of a memory card) is one card: one key press decides both
    card = tmp_path / "card" / "camera7"
    card.mkdir(parents=True)
    for photo in sorted((demo_root / "test" / "test").glob("*.png"))[10:12]:
        shutil.copy(photo, card / photo.name)
    newest = max(q["id"] for q in Catalog(path).queue(limit=1000)) if Catalog(path).queue() else 0
    Catalog(path, device="cpu").add(tmp_path / "card", encounter_by="folder")
    page.goto(f"{base}/review?after={newest}")
    assert page.get_attribute("#encounter-photos", "data-count") == "2"
    before = Catalog(path).stats()["photos_queued"]
    with page.expect_navigation():
        page.keyboard.press("1")
    stats, log = _state(path)
    assert stats["photos_queued"] == before - 2 and log[0]["action"] == log[1]["action"] is not None
    with page.expect_navigation():
        page.keyboard.press("u")  # undone as one
    assert Catalog(path).stats()["photos_queued"] == before


def _save_screenshot(page, tmp_path):
    folder = Path(os.environ.get("JAGUAR_REID_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "review.png"), full_page=True)
    assert (folder / "review.png").stat().st_size > 10_000
