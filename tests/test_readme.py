"""The README's Python example runs as written (in a scratch folder)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    section = text[text.index("## Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md (Python example)", "exec"), namespace)
    vectors = namespace["vectors"]
    assert vectors.shape[0] == 4 and abs(vectors @ vectors.T - 1).diagonal().max() < 1e-4  # L2-normalised, as it says
    assert set(namespace["scores"]) >= {"identity_balanced_map", "retrieval_map"}
    assert (tmp_path / "submission.csv").exists()


def test_import_is_light_and_side_effect_free():
    import os
    import subprocess
    import sys

    code = ("import sys, jaguar_reid, jaguar_reid.cli; "
            "heavy = [m for m in ('torch', 'timm', 'matplotlib', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy; "
            "import jaguar_reid.report.html, matplotlib; backend = matplotlib.get_backend(); "
            "assert backend == 'svg', backend; "  # the report renders Figure objects, it picks no backend
            "assert jaguar_reid.Run.__name__ == 'Run'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "MPLBACKEND": "svg"})
    assert result.returncode == 0, result.stderr[-2000:]
