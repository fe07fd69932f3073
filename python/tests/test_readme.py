"""The Python examples (README.md, docs/python.md) run as written and pass mypy --strict."""

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


README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def readme_example():
    section = README.read_text().split("## From Python", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return block


def test_the_readme_trading_example_runs_as_written_and_passes_mypy_strict(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", readme_example()], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    head = [l for l in lines if l.startswith("{")]
    assert len(head) == 1 and head[0].startswith("{'SPY': 1440, 'QQQ': 1440} True [")
    i = lines.index(head[0])
    assert lines[i + 1 : i + 5] == [
        "working 1.5 cancelled",
        "told working 1.0",
        "told working 1.5",
        "told cancelled 1.5",
    ]
    assert lines[-1].endswith(" USD") and i + 6 == len(lines)
    # Each fill told once (one of an order placed in the last moments may come after the run).
    filled = [l for l in lines if l.startswith("filled ")]
    assert len(filled) == len(set(filled)) <= head[0].count("'filled'")
    example = tmp_path / "example.py"
    example.write_text(readme_example())
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "example.py"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.stdout.startswith("Success: no issues found"), out.stdout + out.stderr
