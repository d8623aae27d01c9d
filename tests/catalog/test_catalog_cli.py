"""The catalogue's commands end to end, as a field team types them."""

import json
import os
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from jaguar_reid.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", [["catalog", "create"], ["catalog", "add"], ["catalog", "decide"], ["catalog", "export"],
                                     ["catalog", "stats"], ["catalog", "bind"], ["catalog", "upgrade"], ["catalog", "rename"],
                                     ["catalog", "merge"], ["catalog", "undo"], ["identify"], ["export"], ["serve"]])
def test_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def _ok(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_catalogue_commands(tmp_path, catalog_run, demo_root):
    db, test_dir = tmp_path / "catalog.db", demo_root / "test" / "test"
    assert "'new individual' below score" in _ok(["catalog", "create", db, "--run", catalog_run, "--device", "cpu"])
    assert "of known individuals" in _ok(["catalog", "add", db, "--images", demo_root / "train" / "train",
                                          "--labels", demo_root / "train.csv", "--who", "ana"])
    output = _ok(["identify", db, test_dir, "--top-k", "2", "--json", tmp_path / "ids.json"])
    results = json.loads((tmp_path / "ids.json").read_text())
    assert len(results) == len(list(test_dir.glob("*.png"))) and all(len(r["candidates"]) == 2 for r in results)
    first = results[0]  # the text says what the JSON says, led by the calibrated probability
    assert output.startswith(f"{first['photo']}: {first['says']}\n")
    p = first["candidates"][0]["probability"]
    assert first["level"] == ("new" if first["verdict"] == "new" else "known" if p >= 0.5 else "uncertain")
    assert f"p {p:.2f}" in first["says"]

    photo = sorted(test_dir.glob("*.png"))[0]
    _ok(["catalog", "add", db, "--images", photo])
    assert "is the new individual Zorro" in _ok(["catalog", "decide", db, photo, "--new", "Zorro", "--who", "ana"])
    result = runner.invoke(app, ["catalog", "decide", str(db), str(photo), "--new", "Zorro"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "already exists" in result.output
    stats = json.loads(_ok(["catalog", "stats", db, "--json"]))
    assert stats["individuals"] == 7 and stats["decisions"] == 1 and stats["photos_queued"] == 0
    assert "individuals        7" in _ok(["catalog", "stats", db])
    assert "train.csv" in _ok(["catalog", "export", db, "--out", tmp_path / "exported"])
    assert (tmp_path / "exported" / "train.csv").read_text().count("Zorro") == 1


def test_errors_are_one_line_without_a_traceback(tmp_path):
    """What a team meets: a file that is not a catalogue, a folder that does not exist, a database
    of another kind, a port out of range. Each one line naming the thing, exit code 2, nothing written."""
    (tmp_path / "notes.txt").write_text("day 3, camera 7\n" * 50)
    (tmp_path / "known.csv").write_text("filename,ground_truth\na.jpg,Bororo\n")
    (tmp_path / "model.safetensors").write_bytes(bytes(range(256)) * 8)
    cases = [(["identify", "postgresql://u:secret@127.0.0.1:9/x", str(tmp_path)], "cannot connect"),
             (["catalog", "stats", str(tmp_path / "none.db")], "no catalogue here"),
             (["catalog", "decide", str(tmp_path / "none.db"), "x.png", "--reject"], "no catalogue here"),
             (["serve", str(tmp_path / "notes.txt")], "not a jaguar-reid catalogue"),
             (["catalog", "stats", str(tmp_path / "known.csv")], "not a jaguar-reid catalogue"),
             (["identify", str(tmp_path / "model.safetensors"), str(tmp_path)], "not a jaguar-reid catalogue"),
             (["catalog", "create", str(tmp_path / "new" / "sub" / "c.db"), "--run", str(tmp_path)], "does not exist (create it first)"),
             (["catalog", "stats", "mysql://u:secret@127.0.0.1/x"], "mysql databases are not supported; use a SQLite file path"),
             (["serve", str(tmp_path / "none.db"), "--port", "99999"], "--port 99999 is out of range")]
    before = sorted(p.name for p in tmp_path.iterdir())
    for index, (args, message) in enumerate(cases):
        if index == 0:  # one in a real process: no traceback reaches the terminal
            result = subprocess.run([sys.executable, "-m", "jaguar_reid", *args], capture_output=True, text=True,
                                    env={**os.environ, "TQDM_DISABLE": "1"})
            code, output = result.returncode, result.stderr + result.stdout
        else:
            result = runner.invoke(app, args)
            code, output = result.exit_code, result.output
        assert code == 2 and output.count("\n") == 1, (args, output)
        assert output.startswith("error: ") and message in output and "secret" not in output, output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_version():
    from jaguar_reid import __version__

    assert _ok(["--version"]).strip() == f"jaguar-reid {__version__}"


@pytest.mark.slow
def test_serve_refuses_an_open_address_without_a_token(tmp_path, catalog_run):
    from jaguar_reid.catalog import Catalog

    Catalog.create(tmp_path / "c.db", [catalog_run], device="cpu")
    result = runner.invoke(app, ["serve", str(tmp_path / "c.db"), "--host", "0.0.0.0"], env={"JAGUAR_REID_TOKEN": ""})
    assert result.exit_code == 2 and "needs --token" in result.output and "serving" not in result.output
    with socket.socket() as busy:  # another program on the port: said before "serving" is printed
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["serve", str(tmp_path / "c.db"), "--port", str(port)])
    assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.output and "serving" not in result.output


@pytest.mark.slow
def test_the_readme_catalogue_example_runs_as_written(tmp_path, catalog_run, demo_root, monkeypatch):
    """Every line of the README's catalogue block, in a folder holding what it names."""
    import re
    import shlex
    import shutil
    from pathlib import Path

    import pandas as pd

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"## Field use.*?```bash\n(.*?)```", readme, re.S).group(1)
    shutil.copytree(catalog_run, tmp_path / "runs" / "lite0")
    labels = pd.read_csv(demo_root / "train.csv")
    labels["ground_truth"] = labels["ground_truth"].replace(labels["ground_truth"].iloc[0], "Bagheera")
    labels.to_csv(tmp_path / "known.csv", index=False)
    shutil.copytree(demo_root / "train" / "train", tmp_path / "known")
    (tmp_path / "new_photos").mkdir()
    tests = sorted((demo_root / "test" / "test").glob("*.png"))
    for index, photo in enumerate(tests[:3]):
        shutil.copy(photo, tmp_path / "new_photos" / ("IMG_0042.JPG" if index == 0 else photo.name))
    (tmp_path / "new_photos" / "notes.txt").write_text("camera 7")
    monkeypatch.chdir(tmp_path)
    commands = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    assert len(commands) >= 12 and all(c[0] == "jaguar-reid" for c in commands)
    for command in commands:
        if command[1] == "serve":  # it would serve until stopped; its checks are tested above
            continue
        output = _ok(command[1:])
        if command[1:3] == ["catalog", "decide"]:
            assert "is Bagheera" in output
    assert (tmp_path / "for_people" / "Bagheera").is_dir() and (tmp_path / "retrain" / "train.csv").exists()
    people = pd.read_csv(tmp_path / "for_people" / "photos.csv")
    assert set(people.columns) == {"file", "individual", "encounter", "side", "date", "location", "decided_by", "decided_at"}
    assert all((tmp_path / "for_people" / f).is_file() for f in people["file"])
    individuals = pd.read_csv(tmp_path / "for_people" / "individuals.csv")
    assert individuals.set_index("name")["photos"].to_dict() == people["individual"].value_counts().to_dict()


@pytest.mark.slow
def test_edits_on_the_command_line_are_logged_and_undoable(tmp_path, catalog_run, demo_root):
    db, test_dir = tmp_path / "c.db", demo_root / "test" / "test"
    _ok(["catalog", "create", db, "--run", catalog_run, "--device", "cpu"])
    _ok(["catalog", "add", db, "--images", demo_root / "train" / "train", "--labels", demo_root / "train.csv"])
    names = sorted(pd_names(demo_root))
    photo = sorted(test_dir.glob("*.png"))[0]
    _ok(["catalog", "add", db, "--images", photo])
    assert f"is {names[0]}" in _ok(["catalog", "decide", db, photo, "--as", names[0]])
    again = _ok(["catalog", "decide", db, photo, "--as", names[1]])  # a decided photo: it says what it was
    assert f"is {names[1]} (was {names[0]}, now {names[1]})" in again
    assert "is now Bororo-M03" in _ok(["catalog", "rename", db, names[1], "Bororo-M03"])
    result = runner.invoke(app, [str(a) for a in ["catalog", "rename", db, names[2], "Bororo-M03"]])
    assert result.exit_code == 2 and "already exists" in result.output
    merged = _ok(["catalog", "merge", db, names[2], names[3]])
    assert f"of {names[2]} to {names[3]}" in merged
    assert "undid decision" in _ok(["catalog", "undo", db])  # the merge
    assert "renamed" in _ok(["catalog", "undo", db])  # then the rename
    result = runner.invoke(app, [str(a) for a in ["catalog", "undo", db, "--decision", "9999"]])
    assert result.exit_code == 2 and "no such decision" in result.output
    result = runner.invoke(app, [str(a) for a in ["identify", db, photo, "--top-k", "0"]])
    assert result.exit_code == 2
    from jaguar_reid.catalog import Catalog

    log = Catalog(db).decision_log()
    (rename,) = [d for d in log if d["decision"] == "rename"]
    merges = {d["id"] for d in log if d["decision"] == "merge"}
    assert log[0]["undoes"] == rename["id"] and {d["undoes"] for d in log[1:1 + len(merges)]} == merges
    assert names[1] in {i["name"] for i in Catalog(db).individuals()}  # the rename was taken back

    # An individual left without photos (its only photo's decision undone) merges, and that merge is
    # logged and undone by the id the command prints (it once named the newest decision, whatever it was).
    _ok(["catalog", "decide", db, photo, "--new", "Nobody"])
    _ok(["catalog", "undo", db])
    hint = _ok(["catalog", "merge", db, "Nobody", names[3]])
    assert "moved 0 photo(s) of Nobody" in hint
    decision = int(hint.split("--decision ")[1].split(")")[0])
    assert Catalog(db).decision(decision)["summary"] == f"merged Nobody into {names[3]}"
    _ok(["catalog", "undo", db, "--decision", decision])
    assert "moved 0 photo(s)" in _ok(["catalog", "merge", db, "Nobody", names[3]])  # not merged away any more


def pd_names(demo_root):
    import pandas as pd

    return set(pd.read_csv(demo_root / "train.csv")["ground_truth"])
