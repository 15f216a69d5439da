"""`make mutate`: mutation testing (mutmut) one module at a time, each run updating the committed summary
tests/MUTATION.md (killed, timed out, survived per module, and the survivors by name)."""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = ROOT / "tests" / "MUTATION.md"
HEADER = ["module", "mutants", "killed", "timed out", "survived", "not checked", "caught"]


def outcome(code: int | None) -> str:
    """mutmut's exit code of one mutant's test run, in words."""
    if code is None:
        return "not checked"
    if code in (-24, 36, 152):  # the CPU-time limit (SIGXCPU) or mutmut's own timeout
        return "timed out"
    return "survived" if code in (0, 5, 33) else "killed"  # 5, 33: no test ran it


def module_row(module: str) -> tuple[list[str], list[str]]:
    """The summary row of one module (a path like common/metrics.py) and its survivors' names."""
    codes = json.loads((ROOT / "mutants" / f"{module}.meta").read_text())["exit_code_by_key"]
    counts = {name: 0 for name in HEADER[2:6]}
    survivors = []
    for key, code in sorted(codes.items()):
        counts[outcome(code)] += 1
        if outcome(code) == "survived":
            survivors.append(key)
    checked = len(codes) - counts["not checked"]
    caught = (counts["killed"] + counts["timed out"]) / checked if checked else 0.0
    return [f"`{module}`", str(len(codes)), *map(str, counts.values()), f"{caught:.1%}"], survivors


def update_summary(module: str) -> None:
    """Replace (or add) `module`'s row and survivors in tests/MUTATION.md, keeping the other modules'."""
    rows, survivors = {}, {}
    if SUMMARY.exists():
        for line in SUMMARY.read_text().splitlines():
            if line.startswith("| `"):
                rows[line.split("`")[1]] = line
            elif line.startswith("- `") and " survived: " in line:
                survivors[line.split("`")[1]] = line
    row, alive = module_row(module)
    rows[module] = "| " + " | ".join(row) + " |"
    survivors[module] = f"- `{module}` survived: " + (", ".join(f"`{name.split('.')[-1]}`" for name in alive) or "none")
    lines = ["# Mutation testing", "",
             "`make mutate MODULE=common/metrics.py` runs mutmut on one module with the fast unit tests (setup.cfg)",
             "and updates its row; `make mutate` runs every module of common/ in turn. A timed-out mutant made the",
             "tests loop or slow down past mutmut's limit, so it counts as caught. `mutmut show NAME` prints a",
             "survivor.",
             "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER),
             *(rows[m] for m in sorted(rows)), "", "Survivors:", *(survivors[m] for m in sorted(survivors))]
    SUMMARY.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("modules", nargs="+", help="source files to mutate, e.g. common/metrics.py")
    args = parser.parse_args()
    for module in args.modules:
        dotted = re.sub(r"\.py$", "", module).replace("/", ".")
        print(f"=== mutmut: {module} ===", flush=True)
        status = subprocess.run([sys.executable, "-m", "mutmut", "run", f"{dotted}.*"], cwd=ROOT).returncode
        if status != 0:
            sys.exit(f"error: mutmut failed on {module} (exit status {status})")
        update_summary(module)
        print(f"updated {SUMMARY.relative_to(ROOT)}: " + SUMMARY.read_text().split(f"`{module}` |")[1].split("\n")[0])


if __name__ == "__main__":
    main()
