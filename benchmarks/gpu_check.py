"""One check of the CUDA path, under 10 minutes on one GPU: the suite's device tests on CUDA (fp16 with its
scaler, a run interrupted and resumed on the GPU ending equal to an uninterrupted one, data kept on the
GPU), then hw3 (cnn and airbench) and hw4 end to end with their defaults, printing times and accuracies.

Runs go to runs/gpu/ (git-ignored); the figures, with the GPU's name, to --out."""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # make `common` importable as a script

import torch

from common.atomic_io import write_json
from common.device import machine_record

RUNS = {  # name: the command's arguments after `python`, as the README gives them
    "hw3 cnn": ["hw3/train.py"],
    "hw3 airbench": ["hw3/train.py", "--model", "airbench"],
    "hw4": ["hw4/train.py"],
}
SMOKE = {"hw3 cnn": ["--epochs", "1", "--limit", "2000", "--val-size", "500"],
         "hw3 airbench": ["--epochs", "1", "--members", "1", "--limit", "2000", "--val-size", "500"],
         "hw4": ["--epochs", "1", "--members", "1", "--limit", "1000", "--val-size", "250"]}


def run(command: list[str]) -> tuple[int, float]:
    """Run `python <command>` from the repository root, echoing its output; its exit status and seconds."""
    print(f"\n=== python {' '.join(command)} ===", flush=True)
    began = time.perf_counter()
    status = subprocess.run([sys.executable, *command], cwd=ROOT).returncode
    return status, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cuda; cpu only to rehearse the script (with --smoke)")
    parser.add_argument("--smoke", action="store_true",
                        help="one epoch on a few thousand images or reviews per run, to check the script itself")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_check.json"),
                        help="where the figures are written (default: %(default)s; the committed record is "
                             "benchmarks/results/gpu_check.json)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run this where one is (or --device cpu --smoke to rehearse)",
              file=sys.stderr)
        sys.exit(2)
    machine = machine_record(torch.device(args.device), "auto")
    print(f"{machine['machine_class']}: --precision auto picks {machine['precision']} "
          f"({machine['precision_reason']})", flush=True)

    status, seconds = run(["-m", "pytest", "-m", "device", "-q", "-p", "no:cacheprovider", "tests/test_device.py"])
    record = {"machine": machine, "device_tests": {"passed": status == 0, "seconds": seconds}, "runs": {}}
    for name, command in RUNS.items():
        out = f"runs/gpu/{name.replace(' ', '_')}"
        full = [*command, "--device", args.device, "--out-dir", out, "--quiet", *(SMOKE[name] if args.smoke else [])]
        status, seconds = run(full)
        metrics = json.loads((ROOT / out / "metrics.json").read_text()) if status == 0 else {}
        record["runs"][name] = {
            "command": "python " + " ".join(full), "status": status, "wall_seconds": seconds,
            "test_accuracy": metrics.get("accuracy"), "final_val_acc": metrics.get("final_val_acc"),
            "precision": metrics.get("precision"),
            "train_samples_per_second": metrics.get("train_images_per_second", metrics.get("train_reviews_per_second")),
        }
    passed = record["device_tests"]["passed"]
    print(f"\n=== {machine['machine_class']} ===\ndevice tests: {'passed' if passed else 'FAILED'}")
    for name, row in record["runs"].items():
        accuracy = f"{100 * row['test_accuracy']:.2f}%" if row["test_accuracy"] is not None else f"exit {row['status']}"
        print(f"{name:<14} {accuracy:>8}  {row['wall_seconds'] / 60:5.1f} min  {row['precision']}")
    write_json(args.out if args.out.is_absolute() else ROOT / args.out, record)
    failed = not record["device_tests"]["passed"] or any(row["status"] for row in record["runs"].values())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
