import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

NYALA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nyala"


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small synthetic competition shared by the tests that only read it."""
    from jaguar_reid.data.synthetic import make_demo_data

    return make_demo_data(tmp_path_factory.mktemp("demo") / "data", identities=6, scale=0.2, seed=3)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
