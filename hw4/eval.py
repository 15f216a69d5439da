"""hw4: evaluate a saved IMDB Transformer checkpoint on the test split of any aclImdb folder or archive,
writing metrics.txt, metrics.json and the confusion matrix."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

from common.cli import add_precision_arg, make_parser, run
from common.data_dir import resolve_data_dir
from common.device import report_machine, select_device
from common.distributed import launch_command
from common.imdb import load_imdb
from hw4.model import load_model
from hw4.report import evaluate_test, write_test_results


def main() -> None:
    parser = make_parser(__doc__, "hw4/results")
    parser.add_argument("--checkpoint", type=Path, default=Path("hw4/results/model.pt"))
    add_precision_arg(parser)
    args = parser.parse_args()
    device = select_device(args.device)
    machine = report_machine(device, args.precision)
    model, config = load_model(args.checkpoint, device)
    test = load_imdb(resolve_data_dir(args.data_dir), "test")
    report, cm = evaluate_test(model, config, test, device=device, precision=machine["precision"], quiet=args.quiet)
    write_test_results(report, cm, args.out_dir, {
        "checkpoint": str(args.checkpoint), **machine, "command": launch_command("hw4/eval.py")})


if __name__ == "__main__":
    run(main)
