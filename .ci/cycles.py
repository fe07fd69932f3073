#!/usr/bin/env python3
"""Finds import cycles between the Rust source files of each crate.

Usage: python3 .ci/cycles.py [ROOT]   (ROOT: the repository, by default this script's parent)

The crates are the `src/` folders of bridge, worker, runner, base, benches, tests and python
(one that does not exist is skipped). Each crate root (`src/lib.rs`, `src/main.rs`,
`src/bin/*.rs`, `src/bin/*/main.rs`) starts a module tree, followed through its `mod NAME;`
declarations to `NAME.rs` or `NAME/mod.rs`.

The model:
- A file depends on another when it names something of the other's module: in a `use`
  declaration (grouped, nested, multi-line, `pub use`, globs, `self` in a group) or in a path
  written out in the code. Paths count when they start with `crate`, `super` or `self`, or with
  the name of a child module of the file's own module (`pub use channel::Config` in a parent
  is an edge from the parent to `channel`). Anything else names another crate and is ignored.
- A path is resolved to the file of the longest prefix that is a module:
  `crate::a::b::C` names `src/a/b.rs` (or `src/a/b/mod.rs`) if there is one, else `src/a.rs`
  (or `src/a/mod.rs`), else the crate root. `super` is the parent of the module the path is
  written in: the module of `foo/bar.rs` is `foo::bar`, its `super` is `foo`; `mod.rs`, `lib.rs`
  and `main.rs` are the module of their folder; an inline `mod x { ... }` is a module too.
- `mod x;` alone is no edge, and a file naming itself is none either.
- Test code is left out: files named `tests.rs`, files under a `tests/` folder, modules
  declared with a `cfg` that needs `test` (`#[cfg(test)]`, `#[cfg(all(test, loom))]`), and
  inside a file any item (`mod`, `fn`, `use`, `impl`, ...) under such a `cfg`.
- Comments and string literals are blanked first, so a path in a doc comment or a log line
  is no edge. `#[path = ...]` on a module is not supported (none is used).

A cycle is a strongly connected component of more than one file. Each is printed with the
edges that form it and the lines they come from; the exit status is then 1. Without cycles,
one line: the crates, files and edges checked; exit status 0.
"""

import os
import re
import sys

CRATES = ["bridge", "worker", "runner", "base", "benches", "tests", "python"]
ITEM_KEYWORDS = {
    "mod", "fn", "use", "impl", "const", "static", "struct", "enum", "type", "trait",
    "extern", "unsafe", "async", "pub", "macro_rules",
}


def blank(text):
    """The text with comments and the contents of string and char literals replaced by
    spaces; newlines kept, so offsets and line numbers stay those of the file."""
    out = list(text)
    n = len(text)
    i = 0

    def wipe(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if c == "/" and i + 1 < n and text[i + 1] == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            wipe(i, j)
            i = j
        elif c == "/" and i + 1 < n and text[i + 1] == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            wipe(i, j)
            i = j
        elif c in "rb" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.compile(r"(?:br|rb|r)(#*)\"").match(text, i)
            if m:
                end = text.find('"' + m.group(1), m.end())
                end = n if end < 0 else end + 1 + len(m.group(1))
                wipe(m.end(), end - 1 - len(m.group(1)))
                i = end
            else:
                i += 1
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            wipe(i + 1, min(j, n))
            i = j + 1
        elif c == "'":
            if i + 1 < n and text[i + 1] == "\\":
                j = i + 2
                while j < n and text[j] != "'":
                    j += 2 if text[j] == "\\" else 1
                wipe(i + 1, min(j, n))
                i = j + 1
            elif i + 2 < n and text[i + 2] == "'":
                wipe(i + 1, i + 2)
                i += 3
            else:
                i += 1  # a lifetime or a label
        else:
            i += 1
    return "".join(out)


def matching(text, open_at):
    """The offset just past the bracket that closes the one at `open_at`."""
    pairs = {"{": "}", "(": ")", "[": "]"}
    stack = []
    for j in range(open_at, len(text)):
        c = text[j]
        if c in pairs:
            stack.append(pairs[c])
        elif stack and c == stack[-1]:
            stack.pop()
            if not stack:
                return j + 1
    return len(text)


ATTR = re.compile(r"#!?\[")


def needs_test(attr):
    """Whether an attribute is a `cfg` that holds only in tests."""
    m = re.match(r"#\[\s*cfg\s*\((.*)\)\s*\]$", attr, re.S)
    if not m:
        return False
    cond = re.sub(r"not\s*\([^()]*\)", "", m.group(1))
    return re.search(r"\btest\b", cond) is not None


def items(text):
    """Outer attributes and the item they precede: (attrs, item start, keyword)."""
    found = []
    i = 0
    n = len(text)
    while True:
        m = ATTR.search(text, i)
        if not m:
            break
        if text[m.start() + 1] == "!":  # an inner attribute: the enclosing item's own
            i = matching(text, m.end() - 1)
            continue
        attrs = []
        j = m.start()
        while True:
            k = j
            while k < n and text[k].isspace():
                k += 1
            if text.startswith("#[", k):
                end = matching(text, k + 1)
                attrs.append(text[k:end])
                j = end
            else:
                break
        kw = re.compile(r"(?:pub\s*(?:\([^)]*\))?\s*)?(\w+)").match(text, k)
        found.append((attrs, k, kw.group(1) if kw else ""))
        i = j
    return found


def strip_tests(text):
    """The (blanked) text with every item under a test-only `cfg` blanked too."""
    out = list(text)
    for attrs, start, kw in items(text):
        if kw not in ITEM_KEYWORDS or not any(needs_test(a) for a in attrs):
            continue
        # The item ends at its block's closing brace, or at its `;` if it has no block.
        j = start
        end = len(text)
        while j < len(text):
            c = text[j]
            if c in "([":
                j = matching(text, j)
                continue
            if c == ";":
                end = j + 1
                break
            if c == "{":
                end = matching(text, j)
                break
            j += 1
        for k in range(start, end):
            if out[k] != "\n":
                out[k] = " "
    return "".join(out)


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
TOKEN = re.compile(r"\s*(::|[{}(),;*]|" + IDENT + r")")


def parse_use(text, start):
    """The paths of the `use` tree beginning at `start` (just after `use`), and the offset
    past its `;`."""
    toks = []
    i = start
    while True:
        m = TOKEN.match(text, i)
        if not m:
            return [], i + 1
        i = m.end()
        if m.group(1) == ";":
            break
        toks.append(m.group(1))
    pos = 0

    def tree(prefix):
        nonlocal pos
        segs = []
        paths = []
        if pos < len(toks) and toks[pos] == "::":
            pos += 1
        while pos < len(toks):
            t = toks[pos]
            if t == "{":
                pos += 1
                while pos < len(toks) and toks[pos] != "}":
                    if toks[pos] == ",":
                        pos += 1
                        continue
                    paths += tree(prefix + segs)
                pos += 1
                return paths
            if t == "*":
                pos += 1
                return [prefix + segs]
            if t in ",}":
                break
            segs.append(t)
            pos += 1
            if pos < len(toks) and toks[pos] == "::":
                pos += 1
                continue
            if pos + 1 < len(toks) and toks[pos] == "as":
                pos += 2
            break
        if segs and segs[-1] == "self":
            segs = segs[:-1]
        return [prefix + segs]

    result = []
    while pos < len(toks):
        before = pos
        result += tree([])
        if pos == before:
            pos += 1
    return result, i


class Crate:
    def __init__(self, root_dir, root_file, name):
        self.name = name
        self.root_dir = root_dir
        self.modules = {}  # module path (tuple) -> file
        self.files = {}  # file -> module path
        self.root = root_file


def module_dir(path, is_root):
    base = os.path.basename(path)
    if is_root or base == "mod.rs":
        return os.path.dirname(path)
    return path[:-3]


def is_test_file(rel):
    parts = rel.split("/")
    return parts[-1] == "tests.rs" or "tests" in parts[:-1]


def discover(crate_dir, repo):
    """Every crate rooted in `crate_dir/src`, with its module tree."""
    src = os.path.join(crate_dir, "src")
    roots = []
    for name in ("lib.rs", "main.rs"):
        if os.path.isfile(os.path.join(src, name)):
            roots.append(os.path.join(src, name))
    bins = os.path.join(src, "bin")
    if os.path.isdir(bins):
        for name in sorted(os.listdir(bins)):
            p = os.path.join(bins, name)
            if name.endswith(".rs") and os.path.isfile(p):
                roots.append(p)
            elif os.path.isfile(os.path.join(p, "main.rs")):
                roots.append(os.path.join(p, "main.rs"))
    crates = []
    for root in roots:
        crate = Crate(crate_dir, root, os.path.relpath(root, repo))
        todo = [(root, (), True)]
        while todo:
            path, mod, is_root = todo.pop()
            if path in crate.files:
                continue
            crate.modules[mod] = path
            crate.files[path] = mod
            text = clean(path)
            here = module_dir(path, is_root)
            for name, inline, _ in mod_decls(text):
                d = os.path.join(here, *inline)
                for cand in (os.path.join(d, name + ".rs"), os.path.join(d, name, "mod.rs")):
                    if os.path.isfile(cand):
                        if not is_test_file(os.path.relpath(cand, crate_dir)):
                            todo.append((cand, mod + tuple(inline) + (name,), False))
                        break
        crates.append(crate)
    return crates


_cache = {}


def clean(path):
    if path not in _cache:
        with open(path, encoding="utf-8") as f:
            _cache[path] = strip_tests(blank(f.read()))
    return _cache[path]


INLINE_MOD = re.compile(r"\bmod\s+(" + IDENT + r")\s*\{")
MOD_DECL = re.compile(r"\bmod\s+(" + IDENT + r")\s*;")


def inline_mods(text):
    """(name, start, end) of every inline module block."""
    spans = []
    for m in INLINE_MOD.finditer(text):
        spans.append((m.group(1), m.end() - 1, matching(text, m.end() - 1)))
    return spans


def nesting(spans, offset):
    return [name for name, a, b in spans if a < offset < b]


def mod_decls(text):
    spans = inline_mods(text)
    return [(m.group(1), nesting(spans, m.start()), m.start()) for m in MOD_DECL.finditer(text)]


CODE_PATH = re.compile(
    r"(?<![A-Za-z0-9_:])\$?(" + IDENT + r")((?:\s*::\s*" + IDENT + r")+)"
)
VIS_IN = re.compile(r"\bpub\s*\(\s*in\s+[^)]*\)")
USE = re.compile(r"(?<![A-Za-z0-9_])use\b")


def resolve(crate, mod, segs):
    """The file a path names from module `mod`, or None for another crate's."""
    if not segs:
        return None
    first = segs[0]
    if first == "crate":
        absolute = list(segs[1:])
    elif first in ("super", "self"):
        absolute = list(mod)
        k = 0
        while k < len(segs) and segs[k] in ("super", "self"):
            if segs[k] == "super":
                if not absolute:
                    return None
                absolute.pop()
            k += 1
        absolute += segs[k:]
    elif tuple(mod) + (first,) in crate.modules:
        absolute = list(mod) + list(segs)
    else:
        return None
    for k in range(len(absolute), -1, -1):
        f = crate.modules.get(tuple(absolute[:k]))
        if f is not None:
            return f
    return None


def edges_of(crate, path):
    """(target file, line, path text) for every dependency of one file."""
    text = VIS_IN.sub(lambda m: " " * len(m.group(0)), clean(path))
    mod = crate.files[path]
    spans = inline_mods(text)
    found = []
    used = []  # spans of use declarations
    for m in USE.finditer(text):
        paths, end = parse_use(text, m.end())
        used.append((m.start(), end))
        scope = list(mod) + nesting(spans, m.start())
        line = line_of(text, m.start())
        for segs in paths:
            target = resolve(crate, scope, segs)
            if target:
                found.append((target, line, "use " + "::".join(segs)))
    for m in CODE_PATH.finditer(text):
        if any(a <= m.start() < b for a, b in used):
            continue
        segs = [m.group(1)] + re.findall(IDENT, m.group(2))
        scope = list(mod) + nesting(spans, m.start())
        if segs[0] not in ("crate", "super", "self") and nesting(spans, m.start()):
            continue  # a child of an inline module is in the same file
        target = resolve(crate, scope, segs)
        if target:
            found.append((target, line_of(text, m.start()), "::".join(segs)))
    return [(t, line, what) for t, line, what in found if t != path]


def components(nodes, graph):
    """Tarjan's strongly connected components."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def where(found):
    """`line 8: use super::frame::{a, b}; line 20: super::c` for the edges of one pair."""
    by_line = {}
    for line, what in found:
        by_line.setdefault(line, []).append(what)
    shown = []
    for line in sorted(by_line)[:4]:
        names = by_line[line]
        if len(names) > 1:
            stem = os.path.commonprefix([n.split("::") for n in names])
            tails = ", ".join("::".join(n.split("::")[len(stem):]) or "self" for n in names)
            names = ["::".join(stem) + "::{" + tails + "}"]
        shown.append(f"line {line}: {names[0]}")
    more = f"; and {len(by_line) - 4} more lines" if len(by_line) > 4 else ""
    return "; ".join(shown) + more


def main():
    repo = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    rel = lambda p: os.path.relpath(p, repo)
    n_crates = n_files = n_edges = 0
    cycles = []
    for name in CRATES:
        crate_dir = os.path.join(repo, name)
        if not os.path.isdir(os.path.join(crate_dir, "src")):
            continue
        for crate in discover(crate_dir, repo):
            n_crates += 1
            graph = {}
            lines = {}
            for path in crate.files:
                n_files += 1
                for target, line, what in edges_of(crate, path):
                    graph.setdefault(path, set()).add(target)
                    lines.setdefault((path, target), []).append((line, what))
            n_edges += sum(len(v) for v in graph.values())
            for comp in components(crate.files, graph):
                if len(comp) > 1:
                    cycles.append((crate, comp, graph, lines))
    if not cycles:
        print(f"import cycles: none ({n_crates} crates, {n_files} files, {n_edges} edges between files)")
        return 0
    for crate, comp, graph, lines in cycles:
        members = set(comp)
        print(f"import cycle among {len(comp)} files of the crate {crate.name}:")
        for a in comp:
            for b in sorted(graph.get(a, ()) & members):
                print(f"  {rel(a)} -> {rel(b)}: {where(lines[(a, b)])}")
    print(f"import cycles: {len(cycles)} ({n_crates} crates, {n_files} files, {n_edges} edges between files)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
