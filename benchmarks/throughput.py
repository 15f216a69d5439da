"""How fast this machine trains each model of the repo, as a fraction of its own matmul peak.

Measures the GEMM peak in fp32 and, where the hardware has it, bf16; then trains each model (hw3 cnn,
hw3 airbench, hw4's Transformer encoder) on synthetic tensors of the real shapes with its real optimizer, in fp32
and in `--precision auto`, and prints one table. FLOPs are those of matmuls, convolutions and
attention, forward and backward, counted by torch.utils.flop_counter on one step."""

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch
from torch import Tensor, nn
from torch.utils import flop_counter

from common.atomic_io import write_json
from common.cli import report_written, run
from common.device import autocast, native_bf16, report_machine
from hw3.model import AirbenchNet, SeedCNN
from hw3.train import RECIPES, make_optimizer
from hw4.model import TransformerClassifier
from hw4.train import RECIPES as HW4_RECIPES

ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")  # e.g. avx2: an AVX2-only CPU
TRANSFORMER = HW4_RECIPES["transformer"]
TARGETS = {"hw3 cnn": 0.5, "hw3 airbench": 0.5, "hw4 encoder": 0.3}  # fraction of the GEMM peak
# The default runs, as the recipes in the train scripts say: command, samples trained (training
# split x epochs x members).
DEFAULT_RUNS = {
    "hw3 cnn": ("python hw3/train.py", 45_000 * RECIPES["cnn"].epochs * RECIPES["cnn"].members),
    "hw3 airbench": ("python hw3/train.py --model airbench",
                     45_000 * RECIPES["airbench"].epochs * RECIPES["airbench"].members),
    "hw4 encoder": ("python hw4/train.py --encoder transformer",
                    22_500 * TRANSFORMER.epochs * TRANSFORMER.members),
}
# torch's FLOP counter knows the GPU attention kernels only; the CPU one does the same matmuls.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *args, **kwargs: flop_counter.sdpa_flop_count(q, k, v),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda grad_out, q, k, v, *args, **kwargs: flop_counter.sdpa_backward_flop_count(grad_out, q, k, v),
}


@dataclass
class Workload:
    """One model's training step on synthetic data: the model, a batch, and its optimizer."""

    name: str
    unit: str  # what a sample is: an image, or a review of `tokens` tokens
    model: nn.Module
    inputs: Tensor
    targets: Tensor
    make_optimizer: object  # (model, precision) -> (optimizer, scheduler or None)
    grad_clip: float | None = None


def gemm_peak(dtype: torch.dtype, size: int, seconds: float) -> float:
    """The best GFLOP/s of `size`-square matmuls in `dtype` over about `seconds`."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    best, end = 0.0, time.perf_counter() + seconds
    a @ b  # warm-up
    while True:
        began = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - began) / 1e9)
        if time.perf_counter() > end:
            return best


def hw3_workload(name: str, tiny: bool) -> Workload:
    """hw3's cnn or airbench network, a batch of its recipe's size, its recipe's optimizer."""
    model_name = name.split()[1]
    recipe = RECIPES[model_name]
    batch = 8 if tiny else recipe.batch_size
    network = {"cnn": SeedCNN, "airbench": AirbenchNet}[model_name]
    model = network((4, 8, 8) if tiny else tuple(recipe.widths))
    model = model.to(memory_format=torch.channels_last)
    images = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)

    def optimizer(model: nn.Module, precision: str):
        return make_optimizer(model, recipe, 1000, precision)
    return Workload(name, "image", model, images, torch.randint(0, 10, (batch,)), optimizer)


def hw4_workload(tiny: bool, tokens: int) -> Workload:
    """hw4's Transformer encoder at its recipe's size, a batch of the recipe's size of reviews of `tokens`
    tokens, AdamW."""
    model = (TransformerClassifier(100, dim=16, layers=1, heads=2, max_len=16) if tiny
             else TransformerClassifier(TRANSFORMER.max_vocab, dim=TRANSFORMER.dim, layers=TRANSFORMER.layers,
                                        heads=TRANSFORMER.heads, ff_mult=TRANSFORMER.ff_mult,
                                        dropout=TRANSFORMER.dropout, max_len=TRANSFORMER.max_len))
    batch, length = (4, 16) if tiny else (TRANSFORMER.batch_size, tokens)

    def optimizer(model: nn.Module, precision: str):
        return torch.optim.AdamW(model.parameters(), lr=TRANSFORMER.lr, weight_decay=TRANSFORMER.weight_decay,
                                 fused=True), None
    ids = torch.randint(2, len(model.embed.weight), (batch, length))
    return Workload("hw4 encoder", f"review ({length} tokens)", model, ids, torch.randint(0, 2, (batch,)),
                    optimizer, grad_clip=1.0)


def train_step(work: Workload, optimizer, scheduler, precision: str) -> None:
    """One training step as common.training.run_epoch takes it."""
    with autocast(torch.device("cpu"), precision):
        output = work.model(work.inputs)
    loss = nn.functional.cross_entropy(output.float(), work.targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if work.grad_clip:
        nn.utils.clip_grad_norm_(work.model.parameters(), work.grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


def flops_per_sample(work: Workload) -> float:
    """Forward + backward FLOPs of one sample (matmuls, convolutions, attention; the backward of
    attention recomputes its scores, as the fused kernels do)."""
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    with counter:
        nn.functional.cross_entropy(work.model(work.inputs), work.targets).backward()
    work.model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(work.targets)


def samples_per_second(work: Workload, precision: str, seconds: float, min_steps: int) -> tuple[float, int]:
    """Training throughput over at least `min_steps` timed steps and about `seconds`, after 2 warm-up steps."""
    optimizer, scheduler = work.make_optimizer(work.model, precision)
    for _ in range(2):
        train_step(work, optimizer, scheduler, precision)
    steps, began = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - began < seconds:
        train_step(work, optimizer, scheduler, precision)
        steps += 1
    return steps * len(work.targets) / (time.perf_counter() - began), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per model and precision")
    parser.add_argument("--min-steps", type=int, default=5, help="timed steps at least, whatever --seconds says")
    parser.add_argument("--gemm-size", type=int, default=2048, help="side of the square matmuls of the peak")
    parser.add_argument("--tokens", type=int, default=256, help="review length of the hw4 batches")
    parser.add_argument("--tiny", action="store_true", help="tiny models and batches: checks that it runs")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    machine = report_machine(cpu, "auto")
    auto = machine["precision"]

    gemm_seconds = 0.2 if args.tiny else 3.0
    size = 64 if args.tiny else args.gemm_size
    peak = {"fp32": gemm_peak(torch.float32, size, gemm_seconds)}
    if native_bf16(cpu)[0]:
        peak["bf16"] = gemm_peak(torch.bfloat16, size, gemm_seconds)
    print("GEMM peak (" + f"{size}x{size}): " + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peak.items()))

    workloads = [hw3_workload("hw3 cnn", args.tiny), hw3_workload("hw3 airbench", args.tiny),
                 hw4_workload(args.tiny, args.tokens)]
    rows = []
    seconds, min_steps = (0.0, 1) if args.tiny else (args.seconds, args.min_steps)
    for work in workloads:
        flops = flops_per_sample(work)
        row = {"model": work.name, "sample": work.unit, "batch": len(work.targets),
               "gflop_per_sample": flops / 1e9}
        for precision in dict.fromkeys(["fp32", auto]):
            rate, steps = samples_per_second(work, precision, seconds, min_steps)
            row[f"{precision}_samples_per_second"] = rate
            row[f"{precision}_steps"] = steps
            row[f"{precision}_fraction_of_peak"] = rate * flops / 1e9 / peak[precision]
        row["auto_over_fp32_time"] = row["fp32_samples_per_second"] / row[f"{auto}_samples_per_second"]
        row["target_fraction"] = TARGETS[work.name]
        rows.append(row)
        print(f"  {work.name}: {row[f'{auto}_samples_per_second']:.1f} samples/s in {auto}", flush=True)

    print(table(rows, auto))
    print(default_runs_table(rows, auto))
    if args.out:
        write_json(args.out, {**machine, "gemm_size": size, "gemm_peak_gflops": peak, "tokens": args.tokens,
                              "command": "".join(f"{k}={os.environ[k]} " for k in ISA_CAPS if k in os.environ)
                              + "python benchmarks/throughput.py " + " ".join(sys.argv[1:]),
                              "models": rows})
        report_written(args.out)


def table(rows: list[dict], auto: str) -> str:
    """The figures as a fixed-width table, one row per model, with each target met or missed."""
    lines = [f"{'model':<13}{'GFLOP/sample':>13}{'fp32 samples/s':>16}{f'auto ({auto}) samples/s':>24}"
             f"{'auto/fp32 time':>16}{'of ' + auto + ' peak':>14}{'target':>8}  verdict"]
    for r in rows:
        fraction, target = r[f"{auto}_fraction_of_peak"], r["target_fraction"]
        ratio = r["auto_over_fp32_time"]
        verdict = ("met" if fraction >= target else "missed") + (", auto no slower" if ratio <= 1.05
                                                                  else ", AUTO SLOWER THAN FP32")
        lines.append(f"{r['model']:<13}{r['gflop_per_sample']:>13.3f}{r['fp32_samples_per_second']:>16.1f}"
                     f"{r[f'{auto}_samples_per_second']:>24.1f}{ratio:>16.2f}{100 * fraction:>13.1f}%"
                     f"{100 * target:>7.0f}%  {verdict}")
    return "\n".join(lines)


def default_runs_table(rows: list[dict], auto: str) -> str:
    """Each default command's training work and the time it takes at the throughput just measured
    (training steps only: data loading, validation and the test pass come on top)."""
    lines = [f"{'default command':<38}{'samples':>10}{'work (PFLOP)':>14}{f'training time in {auto}':>24}"]
    for r in rows:
        command, samples = DEFAULT_RUNS[r["model"]]
        minutes = samples / r[f"{auto}_samples_per_second"] / 60
        lines.append(f"{command:<38}{samples:>10,}{samples * r['gflop_per_sample'] / 1e6:>14.3f}"
                     f"{minutes:>20.1f} min")
    return "\n".join(lines)


if __name__ == "__main__":
    run(main)
