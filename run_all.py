"""Run every homework's scripts with their defaults, in order, and say where each result went.

A script whose data is absent (exit status 3) is reported as skipped with its reason; the run fails
only if a script that ran failed.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SCRIPTS = [
    "hw0/q2.py",
    "hw0/q3.py",
    "hw1/q1.py",
    "hw1/q2.py",
    "hw2/check.py",
    "hw2/train.py",
    "hw3/train.py",
    "hw4/baseline.py",
    "hw4/train.py",
]
DATA_MISSING = 3


def run_script(script: str) -> tuple[str, str, float]:
    """Run one script, echoing its output; returns (status, detail, seconds). On a terminal its stderr
    is the terminal's, so its progress bars show; otherwise (a log, a pipe) stderr is read through
    here, and the summary can quote its last `error:` line."""
    print(f"\n=== python {script} ===", flush=True)
    began = time.perf_counter()
    on_terminal = sys.stderr.isatty()
    proc = subprocess.Popen([sys.executable, script], cwd=ROOT, text=True,
                            stderr=None if on_terminal else subprocess.PIPE)
    last_error = "data not found (its error is above)" if on_terminal else ""
    for line in [] if on_terminal else proc.stderr:
        sys.stderr.write(line)
        if line.startswith("error: "):
            last_error = line.removeprefix("error: ").strip()
    proc.wait()
    seconds = time.perf_counter() - began
    if proc.returncode == 0:
        return "ok", f"results in {Path(script).parent}/results/", seconds
    if proc.returncode == DATA_MISSING:
        return "skipped", last_error or "data not found", seconds
    return "FAILED", last_error or f"exit status {proc.returncode}", seconds


def main() -> int:
    homeworks = sorted({script.split("/")[0] for script in SCRIPTS})
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=homeworks, metavar="HW",
                        help=f"run only these homeworks ({', '.join(homeworks)}); default: all, in order")
    args = parser.parse_args()
    chosen = [script for script in SCRIPTS if not args.only or script.split("/")[0] in args.only]
    outcomes = [(script, *run_script(script)) for script in chosen]
    print("\n=== summary ===")
    for script, status, detail, seconds in outcomes:
        print(f"{status:<8} {script:<16} {seconds:7.1f}s  {detail}")
    return 1 if any(status == "FAILED" for _, status, _, _ in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
