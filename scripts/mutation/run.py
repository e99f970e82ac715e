"""Run the hand-written mutants of ``mutants.py`` against the unchanged test suite.

Usage (from the repository root; not part of CI, a few minutes per mutant on 2 cores)::

    python scripts/mutation/run.py                 # every mutant
    python scripts/mutation/run.py --only ema-decay-swapped --only clip-grad-no-op
    python scripts/mutation/run.py --list

``src/``, ``tests/``, ``configs/`` and ``scripts/`` are copied once to a temporary folder; each
mutant is applied alone to that copy, the test files it names run there (``pytest -x -m "not
slow"``, with ``PYTHONPATH`` pointing at the copy), and the file is restored. The working tree
is never modified. A mutant is *killed* when a test fails, *survived* when all pass, *timeout*
past ``--timeout`` seconds (counted as killed: a hang is noticed), *stale* when its original
snippet no longer occurs exactly once. Results go to a table on stdout and to ``--json`` (default
``mutation-results.json``); the exit code is 1 when a mutant survived or went stale.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]


def run_one(mutant: Mutant, copy: Path, timeout: float) -> dict[str, object]:
    target = copy / "src" / "sepconv" / mutant.file
    source = target.read_text()
    row: dict[str, object] = {"name": mutant.name, "file": mutant.file, "tests": mutant.tests}
    if source.count(mutant.original) != 1:
        return {**row, "status": "stale", "seconds": 0.0, "failed": ""}
    target.write_text(source.replace(mutant.original, mutant.mutated))
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [
        sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow",
        *(str(copy / "tests" / name) for name in mutant.tests),
    ]  # fmt: skip
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout
        )
        status = "survived" if done.returncode == 0 else "killed"
        failed = next((line for line in done.stdout.splitlines() if line.startswith("FAILED")), "")
        if done.returncode not in (0, 1):  # collection error, interrupted, ...
            failed = failed or done.stdout.strip().splitlines()[-1:][0] if done.stdout else ""
    except subprocess.TimeoutExpired:
        status, failed = "timeout", ""
    finally:
        target.write_text(source)
    return {**row, "status": status, "seconds": time.perf_counter() - start, "failed": failed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", default=[], help="mutant name (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    parser.add_argument("--json", type=Path, default=Path("mutation-results.json"))
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    unknown = set(args.only) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutant(s) {sorted(unknown)}; see --list")
    if args.list:
        for m in chosen:
            print(f"{m.name:40} {m.file}")
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="sepconv-mutation-") as tmp:
        copy = Path(tmp)
        # The tests read the shipped configs and scripts (`sepconv reproduce` configs, gpu-train).
        for folder in ("src", "tests", "configs", "scripts"):
            shutil.copytree(
                ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__")
            )
        shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")  # pytest settings
        for i, mutant in enumerate(chosen, 1):
            row = run_one(mutant, copy, args.timeout)
            results.append(row)
            print(
                f"[{i:2}/{len(chosen)}] {row['status']:8} {row['seconds']:6.1f}s  "
                f"{mutant.name:36} {row['failed']}",
                flush=True,
            )
    print(f"\n{'mutant':40} {'file':28} status")
    for row in results:
        print(f"{row['name']:40} {row['file']:28} {row['status']}")
    counts = {
        s: sum(r["status"] == s for r in results)
        for s in ("killed", "timeout", "survived", "stale")
    }
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if counts["survived"] or counts["stale"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
