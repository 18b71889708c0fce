#!/usr/bin/env python3
"""The layout checks the tests cannot make, run by scripts/test.sh (and so by CI):

1. No module cycles: within each crate, no module imports a module that
   imports it back (directly or through others). An import is a `use` of, or
   a path through, `crate::...` or `super::...`; a `pub use` only re-exports
   (a facade) and is followed to the module that defines the name, not counted
   as an import of its own. `#[cfg(test)]` modules are left out.
2. docs/design.md section 17 lists exactly the crates of the workspace, each
   with exactly the kmdr crates its Cargo.toml depends on (`-> a, b`).
3. docs/design.md section 16 holds scripts/recover-without-kmdr.py verbatim.

Exits 1 naming every problem, 0 when the layout holds.
"""
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
problems = []


def module_of(src: Path, f: Path) -> tuple:
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return tuple(parts)


def strip(text: str) -> str:
    """Drop test modules, comments and string literals (roughly)."""
    m = re.search(r"^#\[cfg\(test\)\]\s*\n\s*(pub(\(crate\))? )?mod \w+ \{", text, re.M)
    if m:
        text = text[: m.start()]
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def expand(path: str) -> list:
    """`a::{b, c::d}` -> [`a::b`, `a::c::d`] (one level of braces is enough here)."""
    m = re.match(r"(.*?)::\{(.*)\}$", path.replace("\n", " ").replace(" ", ""))
    if not m:
        return [path.replace(" ", "")]
    out = []
    depth, cur = 0, ""
    for ch in m.group(2) + ",":
        if ch == "," and depth == 0:
            if cur:
                out += expand(m.group(1) + "::" + cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    return out


def check_cycles(crate: Path):
    src = crate / "src"
    files = {module_of(src, f): f for f in src.rglob("*.rs")}
    texts = {m: strip(f.read_text()) for m, f in files.items()}
    # name -> module it comes from, for each module's `pub use` re-exports
    reexports = {m: {} for m in files}
    for m, t in texts.items():
        for u in re.findall(r"^\s*pub(?:\([a-z]+\))? use ([^;]+);", t, re.M):
            for p in expand(u):
                segs = p.split("::")
                name = segs[-1].split(" as ")[-1]
                reexports[m][name] = segs

    def resolve(start: tuple, segs: list):
        cur = list(start)
        for i, s in enumerate(segs):
            if s == "super":
                cur = cur[:-1]
                continue
            if s in ("crate", "self"):
                cur = [] if s == "crate" else cur
                continue
            if tuple(cur + [s]) in files:
                cur.append(s)
                continue
            alias = reexports.get(tuple(cur), {}).get(s)
            if alias and alias[0] in ("crate", "super", "self"):
                return resolve(tuple(cur), alias + segs[i + 1 :])
            break
        return tuple(cur)

    edges = {m: set() for m in files}
    for m, t in texts.items():
        body = re.sub(r"^\s*pub(?:\([a-z]+\))? use [^;]+;", "", t, flags=re.M)
        paths = []
        for u in re.findall(r"^\s*use ((?:crate|super)[^;]+);", body, re.M):
            paths += expand(u)
        body = re.sub(r"^\s*use [^;]+;", "", body, flags=re.M)
        paths += re.findall(r"\b(?:crate|super)(?:::\w+)+", body)
        for p in paths:
            target = resolve(m, p.split(" as ")[0].split("::"))
            if target != m and target in files:
                edges[m].add(target)
    # cycles: a module that reaches itself
    name = lambda m: "::".join(("crate",) + m)
    seen_cycles = set()
    for start in files:
        stack, parent = [start], {start: None}
        while stack:
            cur = stack.pop()
            for n in edges[cur]:
                if n == start:
                    path, x = [start], cur
                    while x != start:
                        path.append(x)
                        x = parent[x]
                    path.append(start)
                    key = frozenset(path)
                    if key not in seen_cycles:
                        seen_cycles.add(key)
                        cycle = " -> ".join(name(p) for p in reversed(path))
                        problems.append(f"{crate.name}: module cycle {cycle}")
                elif n not in parent:
                    parent[n] = cur
                    stack.append(n)


def crate_deps():
    out = {}
    for toml in sorted((ROOT / "crates").glob("*/Cargo.toml")):
        c = tomllib.loads(toml.read_text())
        deps = [d for d in c.get("dependencies", {}) if d.startswith("kmdr")]
        out[c["package"]["name"]] = sorted(deps)
    return out


def section(doc: str, number: int) -> str:
    m = re.search(rf"^## {number}\. .*?(?=^## {number + 1}\. )", doc, re.M | re.S)
    return m.group(0) if m else ""


def check_design(doc: str):
    s17 = section(doc, 17)
    block = re.search(r"```text\n(.*?)```", s17, re.S)
    if not block:
        problems.append("docs/design.md section 17 has no ```text block listing the crates")
        return
    listed = {}
    for line in block.group(1).splitlines():
        m = re.match(r"(kmdr[\w-]*)\s+(?:->\s*([\w, -]+?):)?", line)
        if m:
            deps = [d.strip() for d in (m.group(2) or "").split(",") if d.strip()]
            listed[m.group(1)] = sorted(d if d.startswith("kmdr") else f"kmdr-{d}" for d in deps)
    actual = crate_deps()
    for c in sorted(set(actual) | set(listed)):
        if c not in listed:
            problems.append(f"docs/design.md section 17 does not list crate {c}")
        elif c not in actual:
            problems.append(f"docs/design.md section 17 lists {c}, which is not a crate of the workspace")
        elif listed[c] != actual[c]:
            problems.append(
                f"docs/design.md section 17 says {c} -> {', '.join(listed[c]) or 'nothing'}; "
                f"its Cargo.toml depends on {', '.join(actual[c]) or 'no kmdr crate'}"
            )


def check_recover_script(doc: str):
    s16 = section(doc, 16)
    script = (ROOT / "scripts/recover-without-kmdr.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", s16, re.S)
    if script not in blocks:
        problems.append(
            "docs/design.md section 16 does not hold scripts/recover-without-kmdr.py verbatim: "
            "paste the script into its ```python block"
        )


def main():
    for crate in sorted((ROOT / "crates").iterdir()):
        if (crate / "src").is_dir():
            check_cycles(crate)
    doc = (ROOT / "docs/design.md").read_text()
    check_design(doc)
    check_recover_script(doc)
    for p in problems:
        print(f"check-layout: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("check-layout: no module cycles; design.md sections 16 and 17 match the tree", file=sys.stderr)


if __name__ == "__main__":
    main()
