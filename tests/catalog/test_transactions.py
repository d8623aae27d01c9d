"""Every change is one transaction: a killed or interrupted import leaves the catalogue as it was."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from jaguar_reid.catalog import Catalog
from jaguar_reid.catalog.database import connect, create_schema
from jaguar_reid.catalog.schema import SCHEMA_VERSION, catalog_info, version_1_metadata
from jaguar_reid.errors import CatalogError

SIGNAL_MID_TRANSACTION = textwrap.dedent("""
    import os, signal, sys
    from jaguar_reid.catalog import catalog as module

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal, even when started in the background

    original = module._insert_embeddings
    def insert_then_signal(connection, *args):
        original(connection, *args)          # the image and embedding rows are written, not committed
        os.kill(os.getpid(), getattr(signal, sys.argv[4]))
    module._insert_embeddings = insert_then_signal
    module.Catalog(sys.argv[1], device="cpu").add(sys.argv[2], labels=sys.argv[3])
""")


def _sizes(catalog):
    stats = catalog.stats()
    return stats["individuals"], stats["photos_known"] + stats["photos_queued"]


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGINT"])  # a crash, and Ctrl-C
def test_a_process_stopped_mid_transaction_leaves_the_catalogue_unchanged(location, catalog_run, demo_root, stop):
    where, store = location
    Catalog.create(where, [catalog_run], store=store, device="cpu")
    folder, labels = demo_root / "train" / "train", demo_root / "train.csv"
    stopped = subprocess.run([sys.executable, "-c", SIGNAL_MID_TRANSACTION, where, str(folder), str(labels), stop],
                             capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    if stop == "SIGKILL":
        assert stopped.returncode == -signal.SIGKILL, stopped.stderr
    else:
        assert stopped.returncode != 0 and "KeyboardInterrupt" in stopped.stderr
    catalog = Catalog(where, device="cpu")
    assert _sizes(catalog) == (0, 0)
    assert any(catalog.store.root.rglob("*.png"))  # the photos were copied before the transaction...
    report = catalog.add(folder, labels=labels)  # ...and the rerun completes the import
    assert report.added == len(list(folder.glob("*.png"))) and _sizes(catalog) == (6, report.added)


def test_killed_cli_import_is_all_or_nothing(tmp_path, catalog_run, demo_root):
    db = tmp_path / "c.db"
    Catalog.create(db, [catalog_run], device="cpu")
    folder, labels = demo_root / "train" / "train", demo_root / "train.csv"
    n_photos = len(list(folder.glob("*.png")))
    outcomes = set()
    for delay in (0.5, 1.5, 2.5, 4.0, 6.0, 9.0, 15.0):
        command = [sys.executable, "-m", "jaguar_reid", "catalog", "add", str(db), "--images", str(folder),
                   "--labels", str(labels), "--device", "cpu"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "TQDM_DISABLE": "1"})
        time.sleep(delay)
        process.kill()  # SIGKILL: no handler runs
        process.communicate(timeout=120)
        sizes = _sizes(Catalog(db))
        assert sizes in {(0, 0), (6, n_photos)}, (delay, sizes)
        outcomes.add(sizes)
        if sizes != (0, 0):
            break
    assert (0, 0) in outcomes  # at least one import was stopped before it committed


def test_schema_versions(tmp_path):
    old = tmp_path / "old.db"
    engine = connect(old)
    version_1_metadata().create_all(engine)
    with engine.begin() as connection:
        connection.execute(catalog_info.insert(), [{"key": "schema_version", "value": "1"},
                                                   {"key": "image_store", "value": "old_images"}])
    with pytest.raises(CatalogError, match="schema version 1 is older than 2; upgrade it with: jaguar-reid catalog upgrade"):
        Catalog(old)
    assert Catalog.upgrade(old) == (1, SCHEMA_VERSION)
    assert Catalog(old).stats()["schema_version"] == SCHEMA_VERSION
    assert Catalog.upgrade(old) == (SCHEMA_VERSION, SCHEMA_VERSION)

    newer = tmp_path / "newer.db"
    create_schema(connect(newer), {"image_store": "x"}, "newer.db")
    with connect(newer).begin() as connection:
        connection.execute(catalog_info.update().where(catalog_info.c.key == "schema_version").values(value="99"))
    with pytest.raises(CatalogError, match="schema version 99 is newer than this jaguar-reid understands"):
        Catalog(newer)


def test_unreachable_or_missing_catalogues_are_one_line(tmp_path):
    with pytest.raises(CatalogError, match=r"postgresql://someone:\*\*\*@127\.0\.0\.1:9/x: cannot connect"):
        Catalog("postgresql://someone:secret@127.0.0.1:9/x")
    with pytest.raises(CatalogError, match="no catalogue here"):
        Catalog(tmp_path / "nothing.db")
    assert not (tmp_path / "nothing.db").exists()
    with pytest.raises(CatalogError, match="needs --store"):
        Catalog.create("postgresql://someone:secret@127.0.0.1:9/x", ["run"])
