"""hw3: evaluate a saved CIFAR-10 checkpoint on the test split of any data folder (either format),
writing the confusion matrix and metrics; in fp32 by default, whose figures are the same on every CPU."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

from common.atomic_io import staged_folder
from common.cifar import FORMAT_HELP, FORMATS, load_cifar10
from common.cli import (RepoPath, add_eval_out_dir, add_precision_arg, make_parser, repo_path, report_written,
                        run, shown_path, start_eval)
from common.distributed import launch_command
from hw3.model import load_model
from hw3.report import evaluate_test, write_test_results


def main() -> None:
    parser = make_parser(__doc__, None)
    add_eval_out_dir(parser)
    parser.add_argument("--checkpoint", type=repo_path, default=RepoPath("hw3/results/model.pt"),
                        help="a model.pt or model_int8.pt that hw3/train.py wrote")
    parser.add_argument("--dataset-format", default="auto", choices=FORMATS, help=FORMAT_HELP)
    add_precision_arg(parser, default="fp32")
    args = parser.parse_args()
    ev = start_eval(load_model, args.checkpoint, out_dir=args.out_dir, data_dir=args.data_dir, device=args.device,
                    precision=args.precision, force=args.force)
    test = load_cifar10(ev.data_dir, "test", fmt=args.dataset_format)
    report, cm, probabilities = evaluate_test(ev.model, ev.config, test, device=ev.device,
                                              precision=ev.machine["precision"])
    with staged_folder(ev.out, announce=report_written) as stage:
        write_test_results(report, cm, test, probabilities, stage, {
            "checkpoint": shown_path(args.checkpoint), "model": ev.config.model, **ev.machine,
            "command": launch_command("hw3/eval.py")})
    print(f"test accuracy {100 * report['accuracy']:.2f}% on {len(test)} images, "
          f"macro F1 {report['macro_f1']:.4f}")


if __name__ == "__main__":
    run(main)
