"""report.html: self-contained, and it renders in a real browser with every image shown."""

import re
import shutil
import subprocess

import pytest

from jaguar_reid.config import load_config
from jaguar_reid.report.html import write_report
from jaguar_reid.tasks import evaluate_run
from jaguar_reid.training.trainer import train

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(demo_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("report") / "run"
    cfg = load_config("lite0-finetune", ["model.backbone=resnet18", "model.pretrained=none", "data.image_size=48",
                                    "train.epochs=2", "train.batch_size=8", "train.images_per_identity=2"])
    train(cfg, demo_root, run)
    return write_report(run, evaluate_run(run))


@pytest.mark.slow
def test_report_is_self_contained(report):
    page = report.read_text()
    sources = re.findall(r"<img[^>]* src='([^']+)'", page)
    assert len(sources) >= 6  # curves, identity bars, histogram, two retrieval grids, embedding map
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert "http://" not in page and "https://" not in page
    for heading in ("What each box adds", "Training", "Per identity", "Similarities", "Retrieval examples", "Embedding map"):
        assert heading in page


@pytest.mark.slow
def test_report_explains_itself(report):
    page = report.read_text()
    # Every metric named in words and defined once; higher is better.
    for name in ("identity-balanced mAP", "pair AUC", "top-1"):
        assert f"<dt>{name}</dt>" in page
    assert "higher is better" in page
    # The row that became submission.csv and the kept checkpoint are marked.
    assert page.count("(submission.csv)") == 1 and "class=submission" in page
    assert re.search(r"kept checkpoint: epoch \d+ of 2", page)
    # Plots say which stage of the chain they show.
    assert page.count("stage shown: + transform (clip)") >= 1
    # Retrieval rows: several, with file names, scores and the rank of the first true match.
    captions = re.findall(r"<figcaption>query <b>([^<]+)</b>.*?first true match at rank (\d+)", page)
    assert len(captions) >= 4
    assert re.search(r"[✓✗] \S+\.png \(-?\d\.\d{3}\)", page)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    match = re.search(r'data-render-check="images=(\d+) broken=(\d+) errors=(\d+)"', result.stdout)
    assert match, result.stderr[-2000:]
    images, broken, errors = map(int, match.groups())
    assert images >= 6 and broken == 0 and errors == 0
