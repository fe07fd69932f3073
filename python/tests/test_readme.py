"""The Python guide's example (docs/python.md) runs as written."""

import pathlib
import re
import subprocess
import sys

GUIDE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "python.md"


def test_the_readme_example_runs_as_written():
    text = GUIDE.read_text()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    out = subprocess.run(
        [sys.executable, "-c", blocks[0]], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("['DU0000001'] 1440 Bar(time=")
    assert len(lines) == 11
    assert {l.split()[0] for l in lines[1:]} == {"SPY", "QQQ"}


def test_the_package_and_the_example_pass_mypy_strict(tmp_path):
    text = GUIDE.read_text()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    example = tmp_path / "example.py"
    example.write_text(block)
    # Away from the checkout: the package as installed (its stubs and py.typed included).
    for target in (["example.py"], ["-p", "ibbridge"]):
        out = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *target],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith("Success: no issues found"), out.stdout
