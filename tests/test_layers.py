"""The import layers (issue 19): the contracts in pyproject.toml hold, a violating import
breaks them, and no import cycle exists (one kept must be written down here, with why)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")

#: cycles kept on purpose, with the reason (none: the store's contract moved to
#: gateway.store.base, the simulator's bench profiles to firmware_sim.benchprofiles)
ALLOWED_CYCLES: set[frozenset[str]] = set()


def cycles() -> set[frozenset[str]]:
    g = grimp.build_graph("gateway", "drivers", "firmware_sim")
    adj = {m: g.find_modules_directly_imported_by(m) for m in g.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: set[frozenset[str]] = set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(frozenset(comp))

    sys.setrecursionlimit(10_000)
    for m in sorted(adj):
        if m not in index:
            visit(m)
    return out


def test_no_import_cycles_but_the_written_ones() -> None:
    assert cycles() == ALLOWED_CYCLES


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--no-logo", "--no-cache", str(ROOT / "pyproject.toml")],
                          cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_contracts_hold_and_a_violating_import_breaks_them(tmp_path: Path) -> None:
    for name, src in (("gateway", "gateway"), ("drivers", "drivers"),
                      ("firmware_sim", "firmware-sim")):
        shutil.copytree(ROOT / src, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    ok = lint(tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    live = tmp_path / "gateway" / "ingest" / "live.py"
    live.write_text(live.read_text() + "\nfrom gateway.store import Entry  # noqa\n")
    bad = lint(tmp_path)
    assert bad.returncode == 1
    assert "the backend ingest does not import the edge agent BROKEN" in bad.stdout
    assert "gateway.ingest.live -> gateway.store" in bad.stdout


def test_every_package_is_in_the_wheel() -> None:
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for top in ("gateway", "drivers") for p in (ROOT / top).rglob("__init__.py")}
    assert found <= listed, f"not in [tool.setuptools] packages: {sorted(found - listed)}"
