#!/usr/bin/env python3
"""Checks that the layout tables name every source file, and nothing that is not there.

Usage: python3 .ci/layout.py [ROOT]   (ROOT: the repository, by default this script's parent)

Two tables: the map of every source file, `docs/layout.md` (all its tables), and the map of
folders in the README (the table under its heading `## Layout`). In both, each row's first
cell names one or more paths, each in backticks and written from the repository's root: a
file (`bridge/src/codec.rs`), or a folder ending in `/` (`runner/tests/`). The rest of the
row says what they own.

Every path either table names must exist (a folder as a folder), and no path may be named
twice in one of them.

`docs/layout.md` must name every source file, in a row of its own or one it shares with
files of the same concept: every `.rs` file under the `src/` folder of bridge, base, worker,
runner, python, benches and tests (a crate that does not exist is skipped), and every `.py`
file of the Python package (`python/ibbridge/`). The exception is test code: a module's unit
tests in a `tests.rs` file, or anything under a `tests/` folder inside `src/`, are covered by
the row of the module they test (`ring/tests.rs` by `ring/mod.rs` or `ring.rs`; `x/tests/` by
`x.rs` or `x/mod.rs`) or by a row naming a folder that holds them. Other test files (a
crate's integration tests, examples) need no row; a row may name them, or their folder.

The README's table names every source file too, by folder: a row's first cell names a folder,
its third cell the folder's files (`lib.rs`, `bin/bridge-bench.rs`), relative to it; the same
rules for test code apply. The per-file map with each file's concept lives in `docs/` so that
the README stays short as files are added.

Prints what is missing, stale or named twice and exits 1; otherwise one line and exit 0.
"""

import glob
import os
import re
import sys

FILE_MAP = "docs/layout.md"  # every table in it; must name every source file
FOLDER_MAP = ("README.md", "## Layout")  # the table under that heading; paths must exist
CRATES = ["bridge", "base", "worker", "runner", "python", "benches", "tests"]
PACKAGE = "python/ibbridge"


def table_paths(text, name, heading=None, files=None):
    """(path, line) for every path named in a first cell of a table: every table of the
    text, or only the first one under `heading`. With `files` (a list), the files a row's
    third cell names are appended to it, as paths from the root."""
    lines = text.split("\n")
    start = 0
    if heading is not None:
        try:
            start = next(i for i, l in enumerate(lines) if l.strip() == heading) + 1
        except StopIteration:
            sys.exit(f"{name}: no heading {heading!r}")
    found = []
    in_table = False
    for i in range(start, len(lines)):
        line = lines[i]
        if not line.startswith("|"):
            if in_table and heading is not None:
                break
            in_table = False
            continue
        cells = line.split("|")
        header = not in_table
        in_table = True
        if header or len(cells) < 3 or re.fullmatch(r"[\s:-]*", cells[1]):
            continue
        paths = re.findall(r"`([^`]+)`", cells[1])
        for path in paths:
            found.append((path, i + 1))
        if files is not None and len(cells) > 4:
            for name in re.findall(r"`([^`]+)`", cells[3]):
                if len(paths) != 1 or not paths[0].endswith("/"):
                    sys.exit(f"{name}: line {i + 1}: files named in a row of several folders")
                files.append((paths[0] + name, i + 1))
    if not found:
        sys.exit(f"{name}: no table" + (f" under {heading!r}" if heading else ""))
    return found


def sources(root):
    files = []
    for crate in CRATES:
        src = os.path.join(root, crate, "src")
        if os.path.isdir(src):
            files += glob.glob(os.path.join(src, "**", "*.rs"), recursive=True)
    files += glob.glob(os.path.join(root, PACKAGE, "*.py"))
    return sorted(os.path.relpath(f, root) for f in files)


def test_owners(rel):
    """For test code, the paths whose row covers it: its module's file(s). None otherwise."""
    parts = rel.split("/")
    if "src" not in parts:
        return None
    src = parts.index("src")
    inner = parts[src + 1:]
    if inner[-1] == "tests.rs":
        owner = parts[:-1]
    elif "tests" in inner[:-1]:
        owner = parts[:src + 1 + inner.index("tests")]
    else:
        return None
    if len(owner) == src + 1:  # the crate's own `src/tests.rs`
        return ["/".join(owner + ["lib.rs"]), "/".join(owner + ["main.rs"])]
    return ["/".join(owner) + ".rs", "/".join(owner + ["mod.rs"])]


def check_named(root, name, named, problems):
    """Stale and repeated paths; returns the set of paths named."""
    seen = {}
    for path, line in named:
        if path in seen:
            problems.append(f"{name}: named twice (lines {seen[path]} and {line}): {path}")
        seen.setdefault(path, line)
        full = os.path.join(root, path)
        if path.endswith("/") and not os.path.isdir(full):
            problems.append(f"{name}: stale (no such folder), line {line}: {path}")
        elif not path.endswith("/") and not os.path.isfile(full):
            problems.append(f"{name}: stale (no such file), line {line}: {path}")
    return seen


def read(root, name):
    try:
        with open(os.path.join(root, name), encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        sys.exit(f"{name}: {e.strerror}")


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    problems = []
    readme, heading = FOLDER_MAP
    readme_files = []
    folders_named = check_named(
        root, readme, table_paths(read(root, readme), readme, heading, readme_files), problems)
    readme_seen = check_named(root, readme, readme_files, problems)
    seen = check_named(root, FILE_MAP, table_paths(read(root, FILE_MAP), FILE_MAP), problems)
    required = sources(root)
    for table, named in ((FILE_MAP, seen), (readme, readme_seen)):
        folders = [p for p in named if p.endswith("/")]
        for rel in required:
            if rel in named:
                continue
            owners = test_owners(rel)
            if owners is not None:
                if any(o in named for o in owners) or any(rel.startswith(d) for d in folders):
                    continue
            problems.append(f"{table}: missing: {rel}")
    if problems:
        for p in problems:
            print(p)
        print(f"layout tables: {len(problems)} problem(s)")
        return 1
    print(f"layout tables: true ({len(required)} source files; {FILE_MAP} names {len(seen)} "
          f"paths, {readme} {len(folders_named)} folders and {len(readme_seen)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
