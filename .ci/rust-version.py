# Checks that no dependency built for Linux declares a rust-version newer than the workspace's.
# Input: `cargo metadata --format-version 1 --filter-platform <target>` on stdin.
import json, sys
meta = json.load(sys.stdin)
def ver(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))
used = {n["id"] for n in meta["resolve"]["nodes"]}
pkgs = [p for p in meta["packages"] if p["id"] in used]
ours = {p["rust_version"] for p in pkgs if p["source"] is None}
assert len(ours) == 1 and None not in ours, f"workspace rust-version: {ours}"
ours = ours.pop()
newer = sorted((p["name"], p["rust_version"]) for p in pkgs
               if p["source"] and p["rust_version"] and ver(p["rust_version"]) > ver(ours))
print(f"rust-version {ours}; dependencies that need a newer compiler: {newer or 'none'}")
sys.exit(1 if newer else 0)
