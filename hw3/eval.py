"""hw3: evaluate a saved CIFAR-10 checkpoint on the test split of any data folder (either format),
writing the confusion matrix and metrics."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

from common.cifar import FORMATS, load_cifar10
from common.cli import add_precision_arg, make_parser, run
from common.data_dir import resolve_data_dir
from common.device import report_machine, select_device
from common.distributed import launch_command
from hw3.model import load_model
from hw3.report import evaluate_test, write_test_results


def main() -> None:
    parser = make_parser(__doc__, "hw3/results")
    parser.add_argument("--checkpoint", type=Path, default=Path("hw3/results/model.pt"))
    parser.add_argument("--dataset-format", default="auto", choices=FORMATS)
    add_precision_arg(parser)
    args = parser.parse_args()
    device = select_device(args.device)
    machine = report_machine(device, args.precision)
    model, config = load_model(args.checkpoint, device)
    test = load_cifar10(resolve_data_dir(args.data_dir), "test", fmt=args.dataset_format)
    report, cm = evaluate_test(model, config, test, device=device, precision=machine["precision"])
    write_test_results(report, cm, test.classes, args.out_dir, {
        "checkpoint": str(args.checkpoint), "model": config["model"], **machine,
        "command": launch_command("hw3/eval.py")})
    print(f"test accuracy {100 * report['accuracy']:.2f}% on {len(test)} images, "
          f"macro F1 {report['macro_f1']:.4f}")


if __name__ == "__main__":
    run(main)
