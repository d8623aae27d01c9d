"""A queued encounter is one card in the review app: all its photos, one decision, undone as one."""

import json
import re
import shutil

import pytest
from fastapi.testclient import TestClient

from jaguar_reid.app import create_app
from jaguar_reid.catalog import Catalog


@pytest.mark.slow
def test_one_decision_assigns_a_whole_encounter_and_one_undo_takes_it_back(tmp_path, catalog_run, demo_root):
    path = tmp_path / "catalog.db"
    catalog = Catalog.create(path, [catalog_run], device="cpu")
    catalog.add(demo_root / "train" / "train", labels=demo_root / "train.csv")
    card = tmp_path / "card" / "camera7"
    card.mkdir(parents=True)
    photos = sorted((demo_root / "test" / "test").glob("*.png"))[:3]
    for photo in photos:
        shutil.copy(photo, card / photo.name)
    catalog.add(tmp_path / "card", encounter_by="folder")
    decisions_before = len(catalog.decision_log())

    client = TestClient(create_app(path, device="cpu"))
    page = client.get("/review")
    assert 'id="encounter-photos" data-count="3"' in page.text  # the card shows the encounter's three photos
    image_id = int(re.search(r'data-image-id="(\d+)"', page.text).group(1))
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    shown = re.search(r'name="shown" value="([^"]+)"', page.text).group(1).replace("&#34;", '"')
    target = json.loads(shown)[0]["individual"]
    done = client.post(f"/review/{image_id}", data={"csrf": csrf, "action": "confirm", "individual": target, "shown": shown,
                                                     "encounter": "1", "after": "0"}, headers={"Origin": "http://testserver"})
    assert done.status_code == 200

    after = Catalog(path)
    assert after.stats()["photos_queued"] == 0  # all three decided at once
    log = after.decision_log()[: len(after.decision_log()) - decisions_before]
    assert len(log) == 3 and len({d["action"] for d in log}) == 1 and log[0]["action"] is not None  # one action
    assert {d["individual"] for d in log} == {target} and json.loads(log[0]["candidates"])[0]["individual"] == target
    assert after.undo(log[0]["id"]) == 3  # undoing any row of it takes the whole encounter back
    assert after.stats()["photos_queued"] == 3
