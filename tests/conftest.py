import os
import uuid
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


# ---- catalogue fixtures: a small trained run with held-out identities, and each database backend.
# PostgreSQL tests use the server at ``JAGUAR_REID_TEST_POSTGRES`` (an admin URL whose role may
# create databases; default: the one ``.ci/run`` sets up). Where none answers they are skipped,
# unless ``JAGUAR_REID_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which makes that a failure.

POSTGRES_ADMIN = os.environ.get("JAGUAR_REID_TEST_POSTGRES", "postgresql+psycopg://jaguar:jaguar@127.0.0.1:5432/postgres")
TINY = ["data.image_size=64", "train.epochs=3", "train.batch_size=16", "data.alpha=gray", "train.feature_views=1",
        "split.unknown_fraction=0.2"]


@pytest.fixture(scope="session")
def catalog_run(demo_root, tmp_path_factory):
    """lite0-cpu trained head-only on the 6-identity demo data, one identity held out as unknown, calibrated."""
    from jaguar_reid.config import load_config
    from jaguar_reid.tasks import calibrate_run
    from jaguar_reid.training.trainer import train

    out = tmp_path_factory.mktemp("catalog_runs") / "run"
    train(load_config("lite0-cpu", TINY), demo_root, out)
    calibrate_run(out, device="cpu")
    return out


def _postgres_database():
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"jr_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        if os.environ.get("JAGUAR_REID_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unreachable: {error}")
        pytest.skip("no PostgreSQL server (set JAGUAR_REID_TEST_POSTGRES)")
    return admin, name, admin.url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database (dropped afterwards)."""
    from sqlalchemy import text

    admin, name, url = _postgres_database()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    """Where a fresh catalogue goes, and its photo store: (location, store or None)."""
    if request.param == "sqlite":
        return str(tmp_path / "catalog.db"), None
    return request.getfixturevalue("postgres_url"), tmp_path / "store"
