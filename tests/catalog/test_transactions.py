"""Every change is one transaction: a killed or interrupted import leaves the catalogue as it was."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from jaguar_reid.catalog import Catalog
from jaguar_reid.catalog.database import connect, create_schema
from jaguar_reid.catalog.schema import SCHEMA_VERSION, catalog_info, version_metadata
from jaguar_reid.errors import CatalogError, UserError

SIGNAL_MID_TRANSACTION = textwrap.dedent("""
    import os, signal, sys
    from jaguar_reid.catalog import Catalog
    from jaguar_reid.catalog.repository import Repository

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal, even when started in the background

    original = Repository.put_embeddings
    def insert_then_signal(connection, *args, **kwargs):
        original(connection, *args, **kwargs)  # the image and embedding rows are written, not committed
        os.kill(os.getpid(), getattr(signal, sys.argv[4]))
    Repository.put_embeddings = staticmethod(insert_then_signal)
    Catalog(sys.argv[1], device="cpu").add(sys.argv[2], labels=sys.argv[3])
""")


def _sizes(catalog):
    stats = catalog.stats()
    return stats["individuals"], stats["photos_known"] + stats["photos_queued"]


@pytest.mark.slow
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


@pytest.mark.slow
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


def _old_catalogue(path, version: int):
    engine = connect(path)
    version_metadata(version).create_all(engine)
    with engine.begin() as connection:
        connection.execute(catalog_info.insert(), [{"key": "schema_version", "value": str(version)},
                                                   {"key": "image_store", "value": "old_images"}])
    return engine


def test_schema_versions(tmp_path):
    old = tmp_path / "old.db"
    _old_catalogue(old, 1)
    with pytest.raises(CatalogError, match=f"schema version 1 is older than {SCHEMA_VERSION}; upgrade it with: jaguar-reid catalog upgrade"):
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


def test_upgrade_2_to_3_moves_undo_pointers_and_merge_details_out_of_candidates(location, tmp_path):
    """Version 2 kept an undo's target and a merge's names in ``candidates``; version 3 has
    ``undoes`` and ``detail`` for them and a change counter, on SQLite and PostgreSQL alike."""
    import json

    from sqlalchemy import insert, select

    from jaguar_reid.catalog.schema import decisions

    where, _ = location
    engine = _old_catalogue(where, 2)
    old = version_metadata(2)
    shown = [{"individual": "Ipepo", "probability": 0.8}]
    with engine.begin() as connection:
        connection.execute(insert(old.tables["individuals"]), [{"id": 1, "name": "Ipepo", "notes": "", "created_at": "t"},
                                                               {"id": 2, "name": "Bororo", "notes": "", "created_at": "t"}])
        connection.execute(insert(old.tables["images"]).values(
            id=1, sha256="a" * 64, original_name="a.jpg", stored_path="aa/a.jpg", width=10, height=10, individual_id=2,
            status="known", extra="{}", added_by="x", added_at="t"))
        rows = [{"id": 1, "image_id": 1, "decision": "known", "individual_id": 1, "previous": "{}", "candidates": json.dumps(shown)},
                {"id": 2, "image_id": 1, "decision": "merge", "individual_id": 2, "action": "m1",
                 "previous": json.dumps({"status": "known", "individual_id": 1}),
                 "candidates": json.dumps({"merged": "Ipepo", "into": "Bororo"})},
                {"id": 3, "image_id": 1, "decision": "undo", "individual_id": 1, "action": "m1", "previous": "{}",
                 "candidates": json.dumps({"undoes": 2})}]
        connection.execute(insert(old.tables["decisions"]), [{**r, "who": "x", "at": "t"} for r in rows])
    engine.dispose()
    assert Catalog.upgrade(where) == (2, SCHEMA_VERSION)
    catalog = Catalog(where)
    with catalog.db.connect() as connection:
        upgraded = {r["id"]: r for r in connection.execute(select(decisions).order_by(decisions.c.id)).mappings()}
    assert json.loads(upgraded[1]["candidates"]) == shown  # what the reviewer saw is kept as it was
    assert json.loads(upgraded[2]["detail"]) == {"source": "Ipepo", "target": "Bororo"} and upgraded[2]["candidates"] == "[]"
    assert upgraded[3]["undoes"] == 2 and upgraded[3]["candidates"] == "[]"
    assert catalog.repository.changes() == 0
    # the id sequence continues after the copied rows (PostgreSQL would otherwise reuse id 1)
    renamed = catalog.rename("Bororo", "Bororo-M03")
    assert renamed["id"] == 4 and catalog.repository.changes() == 1
    assert [d["summary"] for d in catalog.decision_log()][:2] == ["renamed Bororo to Bororo-M03", "undo of #2 (back to Ipepo)"]


@pytest.mark.slow
def test_a_failed_create_leaves_nothing_behind_and_the_retry_works(location, catalog_run, tmp_path):
    from sqlalchemy import inspect

    where, store = location
    with pytest.raises(UserError):
        Catalog.create(where, [tmp_path / "not_a_run"], store=store, device="cpu")  # fails after the schema was made
    if "://" in str(where):
        engine = connect(where)
        assert inspect(engine).get_table_names() == []  # no half-made catalogue left in the database
        engine.dispose()
    else:
        assert not Path(where).exists()
    assert Catalog.create(where, [catalog_run], store=store, device="cpu").stats()["schema_version"] == SCHEMA_VERSION
