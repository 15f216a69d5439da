"""hw4: evaluate a saved IMDB checkpoint on the test split of any aclImdb folder or archive, writing
metrics.txt, metrics.json, the confusion matrix and mistakes.md; in fp32 by default, whose figures are the
same on every CPU."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

from common.atomic_io import staged_folder
from common.checkpoint import COMPACT_CHECKPOINT
from common.cli import (RepoPath, add_eval_out_dir, add_precision_arg, make_parser, repo_path, report_written,
                        run, shown_path, start_eval)
from common.distributed import launch_command
from common.imdb import load_imdb
from hw4.model import load_model
from hw4.report import evaluate_test, mistakes_report, print_test_summary, write_test_results


def main() -> None:
    parser = make_parser(__doc__, None)
    add_eval_out_dir(parser)
    parser.add_argument("--checkpoint", type=repo_path, default=RepoPath(f"hw4/results/{COMPACT_CHECKPOINT}"),
                        help="a model.pt or model_int8.pt that hw4/train.py wrote")
    add_precision_arg(parser, default="fp32")
    args = parser.parse_args()
    ev = start_eval(load_model, args.checkpoint, out_dir=args.out_dir, data_dir=args.data_dir, device=args.device,
                    precision=args.precision, force=args.force)
    test = load_imdb(ev.data_dir, "test")
    report, cm, probabilities = evaluate_test(ev.model, ev.config, test, device=ev.device,
                                              precision=ev.machine["precision"], quiet=args.quiet)
    mistakes = mistakes_report(ev.model, ev.config, test, probabilities)
    with staged_folder(ev.out, announce=report_written) as stage:
        write_test_results(report, cm, stage, {
            "checkpoint": shown_path(args.checkpoint), **ev.machine, "command": launch_command("hw4/eval.py")},
            mistakes)
    print_test_summary(report)


if __name__ == "__main__":
    run(main)
