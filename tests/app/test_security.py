"""The review app's guards, checked with an HTTP client: token, cross-site POSTs, uploads, names, errors."""

import io
import re
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from jaguar_reid.app import create_app
from jaguar_reid.catalog import Catalog


@pytest.fixture
def catalogue(tmp_path, catalog_run, demo_root):
    path = tmp_path / "catalog.db"
    catalog = Catalog.create(path, [catalog_run], device="cpu")
    catalog.add(demo_root / "train" / "train", labels=demo_root / "train.csv")
    return path


def _csrf(client) -> str:
    page = client.get("/upload")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def _png(size=(40, 30), color=(200, 120, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_token_is_required_on_every_request(catalogue):
    client = TestClient(create_app(catalogue, token="s3cret", device="cpu"))
    for path in ("/review", "/individuals", "/photos/" + "0" * 64, "/export/decisions.csv", "/static/app.js"):
        assert client.get(path).status_code == 401, path
    assert client.post("/who", data={"who": "x"}).status_code == 401
    assert client.get("/review", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/review", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    entered = client.get("/individuals?token=s3cret", follow_redirects=False)
    assert entered.status_code == 303 and "token" not in entered.headers["location"]
    assert client.get("/individuals").status_code == 200  # the cookie carries it from now on


@pytest.mark.slow
def test_cross_site_posts_are_refused(catalogue):
    client = TestClient(create_app(catalogue, device="cpu"))
    csrf = _csrf(client)
    files = {"photos": ("a.png", _png(), "image/png")}
    assert client.post("/upload", data={}, files=files).status_code == 403  # no token in the form
    assert client.post("/upload", data={"csrf": "forged"}, files=files).status_code == 403
    assert client.post("/upload", data={"csrf": csrf}, files=files,
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/upload", data={"csrf": csrf}, files=files, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert Catalog(catalogue).stats()["photos_queued"] == 0
    done = client.post("/upload", data={"csrf": csrf}, files=files, headers={"Origin": "http://testserver"})
    assert done.status_code == 200 and "1 photo(s) queued" in done.text


@pytest.mark.slow
def test_uploads_are_checked_by_content_and_size(catalogue):
    client = TestClient(create_app(catalogue, device="cpu", max_upload_mb=1, max_pixels=1_000_000))
    csrf = _csrf(client)
    fake = client.post("/upload", data={"csrf": csrf}, files={"photos": ("cat.jpg", b"MZ\x90\x00 not a picture", "image/jpeg")})
    assert fake.status_code == 400 and "could be read: cat.jpg (not an image)" in fake.text and "Traceback" not in fake.text
    big = client.post("/upload", data={"csrf": csrf}, files={"photos": ("big.png", b"\x00" * (2 * 2**20), "image/png")})
    assert big.status_code == 413
    bomb = client.post("/upload", data={"csrf": csrf}, files={"photos": ("bomb.png", _png((2000, 1000)), "image/png")})
    assert bomb.status_code == 400 and "bomb.png (too large (2000x1000 pixels; the limit is 1,000,000))" in bomb.text
    assert Catalog(catalogue).stats()["photos_queued"] == 0
    sneaky = client.post("/upload", data={"csrf": csrf}, files={"photos": ("../../etc/passwd.png", _png(), "image/png")})
    assert sneaky.status_code == 200
    queued = Catalog(catalogue).queue()[0]
    assert queued["original_name"] == "passwd.png" and "/" not in queued["stored_path"].split("/", 1)[1]
    assert (Catalog(catalogue).store.path(queued["stored_path"])).is_file()


@pytest.mark.slow
def test_paths_and_names_from_the_url_are_not_paths(catalogue):
    client = TestClient(create_app(catalogue, device="cpu"))
    assert client.get("/photos/../../catalog.db").status_code == 404
    assert client.get("/photos/" + "a" * 63 + "/").status_code in (404, 307)
    assert client.get("/individuals/..%2F..%2Fetc").status_code == 404
    missing = client.get("/individuals/Nobody")
    assert missing.status_code == 400 and "no individual named &#39;Nobody&#39;" in missing.text
    crash = client.get("/review?after=notanumber")
    assert crash.status_code == 422 and "Traceback" not in crash.text


@pytest.mark.slow
def test_two_reviewers_on_postgresql_never_double_a_decision(postgres_url, tmp_path, catalog_run, demo_root):
    Catalog.create(postgres_url, [catalog_run], store=tmp_path / "store", device="cpu")
    Catalog(postgres_url).add(demo_root / "train" / "train", labels=demo_root / "train.csv")
    photos = sorted((demo_root / "test" / "test").glob("*.png"))[:6]
    Catalog(postgres_url).add(photos)
    queued = [q["id"] for q in Catalog(postgres_url).queue(limit=10)]
    names = sorted({i["name"] for i in Catalog(postgres_url).individuals()})
    reviewers = [Catalog(postgres_url, device="cpu") for _ in range(2)]  # two sessions, two connection pools
    barrier, outcomes = threading.Barrier(2), {0: [], 1: []}

    def review(index):
        for image_id in queued:
            barrier.wait()
            try:
                reviewers[index].decide(f"#{image_id}", as_name=names[index], who=f"reviewer{index}",
                                        candidates=[], expect_status="queued")
                outcomes[index].append(image_id)
            except Exception as error:  # the other reviewer got there first
                assert "already decided" in str(error)

    threads = [threading.Thread(target=review, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes[0] + outcomes[1]) == sorted(queued)  # every photo decided exactly once
    log = Catalog(postgres_url).decision_log()
    assert len(log) == len(queued) and {d["who"] for d in log} <= {"reviewer0", "reviewer1"}
