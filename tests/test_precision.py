"""--precision auto: bf16 only where the hardware runs it natively; the machine record; the throughput
benchmark's FLOP counts against hand counts, and its tiny mode."""

from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks.throughput import Workload, flops_per_sample, hw4_workload
from benchmarks.throughput import main as bench_main
from common.device import (autocast, bf16_units, describe_machine, gradient_scaler, machine_class, machine_record,
                           native_bf16, processor_name, report_machine, resolve_precision, select_device)
from common.errors import UserError
from hw3.train import RECIPES
from hw4.model import TransformerClassifier
from tests.conftest import run_script

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def fake_cpu(monkeypatch, *, amx: bool, avx512_bf16: bool, capability: str = "AVX512") -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)


def fake_cuda(monkeypatch, *, bf16: bool, capability: tuple[int, int] = (8, 0)) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: bf16 and (including_emulation or capability >= (8, 0)))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


@pytest.mark.parametrize("amx, avx512_bf16, capability, expected", [
    (True, True, "AVX512", "bf16"),     # Sapphire Rapids and later
    (False, True, "AVX512", "bf16"),    # Cooper Lake, AMD Zen 4
    (False, False, "AVX512", "fp32"),   # Skylake-X: AVX-512 without bf16
    (False, False, "AVX2", "fp32"),     # most laptops, AMD Zen 2/3
    (True, True, "AVX2", "fp32"),       # bf16 hardware, but kernels capped at AVX2 (ATEN_CPU_CAPABILITY)
])
def test_auto_on_cpu_is_bf16_only_with_native_support(monkeypatch, amx, avx512_bf16, capability, expected):
    fake_cpu(monkeypatch, amx=amx, avx512_bf16=avx512_bf16, capability=capability)
    precision, reason = resolve_precision("auto", CPU)
    assert precision == expected
    if expected == "bf16":
        assert reason.startswith("this CPU has native bf16 (") and ("AMX" in reason) == amx
    elif avx512_bf16:  # the hardware is there, the kernels are not
        assert reason == f"PyTorch's CPU kernels run at capability {capability}, where bf16 is emulated"
    else:
        assert reason == f"this CPU has no native bf16 (capability {capability}); bf16 would be emulated"


@pytest.mark.parametrize("capability, expected", [
    ((9, 0), "bf16"),   # H100, H200
    ((8, 0), "bf16"),   # A100; 8.6 (RTX 30xx, A10) and 8.9 (L4, RTX 40xx) alike
    ((7, 5), "fp16"),   # T4, RTX 20xx: tensor cores without bf16
    ((7, 0), "fp16"),   # V100
    ((6, 0), "fp32"),   # P100: no tensor cores
])
def test_auto_on_cuda_follows_the_gpu(monkeypatch, capability, expected):
    fake_cuda(monkeypatch, bf16=True, capability=capability)  # bf16 below 8.0 is only emulated
    precision, reason = resolve_precision("auto", CUDA)
    assert precision == expected
    assert reason == {"bf16": "Fake GPU has native bf16", "fp32": "Fake GPU has no native bf16",
                      "fp16": "Fake GPU has no native bf16; fp16 tensor cores with a gradient scaler instead"}[expected]


@pytest.mark.parametrize("forced", ["bf16", "fp16", "fp32"])
def test_forced_precisions_are_taken_as_given(monkeypatch, forced):
    fake_cpu(monkeypatch, amx=False, avx512_bf16=False, capability="AVX2")
    fake_cuda(monkeypatch, bf16=False)
    for device in (CPU, CUDA):
        assert resolve_precision(forced, device) == (forced, "forced by --precision")


def test_unknown_precision_is_a_user_error():
    with pytest.raises(UserError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", CPU)


def test_mps_keeps_fp32_and_says_why():
    precision, reason = resolve_precision("auto", torch.device("mps"))
    assert precision == "fp32" and reason.startswith("mps: ") and "--precision fp16" in reason


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", None)])
def test_autocast_and_the_gradient_scaler_follow_the_precision(precision, dtype):
    with autocast(CPU, precision):
        assert (torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None) == dtype
    assert (gradient_scaler(CPU, precision) is not None) == (precision == "fp16")


def test_machine_record_names_the_machine_class(monkeypatch):
    fake_cpu(monkeypatch, amx=False, avx512_bf16=False, capability="AVX2")
    record = machine_record(CPU, "auto")
    assert record["precision"] == "fp32" and "emulated" in record["precision_reason"]
    assert record["cpu_capability"] == "AVX2" and record["threads"] == torch.get_num_threads()
    assert record["torch"] == torch.__version__ and record["gpu"] is None and record["cpu"]
    threads = torch.get_num_threads()
    assert record["machine_class"] == f"{record['cpu']}, no native bf16, capability AVX2, {threads} threads"
    fake_cpu(monkeypatch, amx=True, avx512_bf16=True, capability="AVX512")
    assert ", AMX and AVX-512 BF16, capability AVX512, " in machine_record(CPU, "auto")["machine_class"]


# --- the throughput benchmark -------------------------------------------------------------------
def test_flop_count_of_a_small_conv_net_matches_a_hand_count():
    batch, side, c_in, c_out, classes = 4, 8, 3, 5, 7
    model = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.Flatten(),
                          nn.Linear(c_out * side * side, classes))
    work = Workload("toy", "image", model, torch.randn(batch, c_in, side, side),
                    torch.randint(0, classes, (batch,)), make_optimizer=None)
    conv = 2 * side * side * c_out * c_in * 9  # per image, forward
    linear = 2 * c_out * side * side * classes
    # backward: weight gradients of both layers, the input gradient of the linear layer only
    # (the conv's input needs no gradient)
    assert flops_per_sample(work) == conv + linear + conv + 2 * linear


def test_flop_count_of_a_small_encoder_matches_a_hand_count():
    batch, length, dim, ff, vocab = 2, 6, 8, 4, 50
    model = TransformerClassifier(vocab, dim=dim, layers=1, heads=2, ff_mult=ff, dropout=0.0, max_len=length)
    work = Workload("toy", "review", model, torch.randint(2, vocab, (batch, length)),
                    torch.randint(0, 2, (batch,)), make_optimizer=None)
    projections = 2 * length * dim * (3 * dim + dim + 2 * ff * dim)  # qkv, out, feed-forward, per review
    attention = 2 * 2 * length * length * dim  # q k^T and attention @ v, all heads together
    head = 2 * dim * 2
    # backward: twice each matmul (input and weight gradients; the embedding lookup has none), and
    # attention's five: the scores recomputed, then the gradients of scores, values, queries and keys
    assert flops_per_sample(work) == 3 * (projections + head) + 3.5 * attention


@pytest.mark.script
def test_benchmark_runs_in_tiny_mode(tmp_path, monkeypatch, capsys):
    import json
    import sys
    monkeypatch.setattr(sys, "argv", ["throughput.py", "--tiny", "--out", str(tmp_path / "bench.json")])
    bench_main()
    printed = capsys.readouterr().out
    assert "GEMM peak" in printed and "hw4 encoder" in printed
    record = json.loads((tmp_path / "bench.json").read_text())
    assert [row["model"] for row in record["models"]] == ["hw3 cnn", "hw3 airbench", "hw4 encoder"]
    for row in record["models"]:
        auto = record["precision"]
        assert row["gflop_per_sample"] > 0 and row[f"{auto}_samples_per_second"] > 0
        assert row["auto_over_fp32_time"] == pytest.approx(
            row["fp32_samples_per_second"] / row[f"{auto}_samples_per_second"])


@pytest.mark.script
def test_hw3_profile_times_every_phase_of_the_default_and_scales_them_to_the_run(tmp_path, cifar_jpeg_dir):
    import json
    result = run_script("benchmarks/profile_hw3.py", "--data-dir", cifar_jpeg_dir, "--limit", "60", "--steps", "2",
                        "--out", tmp_path / "profile.json")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "profile.json").read_text())
    assert list(record["seconds"]) == ["load data (warm cache)", "make the batch (normalize, flip, crop)", "forward",
                                       "backward", "optimizer and schedule", "validation, every epoch",
                                       "test (tta 1)", "figures (curves, confusion matrix)"]
    assert all(seconds > 0 for seconds in record["seconds"].values())
    assert record["total_seconds"] == pytest.approx(sum(record["seconds"].values()))
    assert RECIPES["cnn"].batch_size >= 54  # so 54 images make one step an epoch
    assert record["steps_in_run"] == RECIPES["cnn"].epochs and record["steps_timed"] == 2
    assert "sum, scaled to the whole run" in result.stdout and not list(tmp_path.glob(".profile*"))


def test_hw4_workload_has_the_default_model_size():
    work = hw4_workload(tiny=False, tokens=256)
    assert work.inputs.shape == (32, 256) and len(work.model.blocks) == 2 and work.model.dim == 128


def test_the_machine_class_names_the_gpu_or_the_cpu_and_its_bf16_units(monkeypatch):
    fake_cuda(monkeypatch, bf16=True)
    names = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: names.append(device) or "Fake GPU")
    record = machine_record(torch.device("cuda", 1), "auto")
    assert (record["machine_class"], record["gpu"], record["device"]) == ("Fake GPU", "Fake GPU", "cuda:1")
    assert record["precision"] == "bf16" and record["precision_reason"] == "Fake GPU has native bf16"
    assert set(names) == {torch.device("cuda", 1)}  # every name asked of the run's own GPU
    assert machine_class(torch.device("mps")) == f"{processor_name()} (mps)"
    fake_cpu(monkeypatch, amx=True, avx512_bf16=False)
    assert bf16_units() == ["AMX"] and ", AMX, capability AVX512, " in machine_class(CPU)
    fake_cpu(monkeypatch, amx=False, avx512_bf16=True)
    assert bf16_units() == ["AVX-512 BF16"] and native_bf16(CPU) == (True, "this CPU has native bf16 (AVX-512 BF16)")
    fake_cpu(monkeypatch, amx=True, avx512_bf16=True)
    assert native_bf16(CPU) == (True, "this CPU has native bf16 (AMX and AVX-512 BF16)")
    for capped in ("DEFAULT", "AVX2", "NO AVX"):
        fake_cpu(monkeypatch, amx=True, avx512_bf16=True, capability=capped)
        assert native_bf16(CPU) == (False, f"PyTorch's CPU kernels run at capability {capped}, where bf16 is emulated")
    fake_cpu(monkeypatch, amx=False, avx512_bf16=False, capability="AVX512")
    assert native_bf16(CPU) == (False, "this CPU has no native bf16 (capability AVX512); bf16 would be emulated")
    assert native_bf16(torch.device("mps")) == (False, "bf16 autocast is not used on mps")


@pytest.mark.parametrize("capability, expected", [((7, 0), "fp16"), ((6, 1), "fp32")])
def test_a_gpu_without_native_bf16_gets_fp16_from_volta_on(monkeypatch, capability, expected):
    fake_cuda(monkeypatch, bf16=False, capability=capability)
    emulation, asked = [], []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: emulation.append(including_emulation))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: asked.append(device) or "Fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability)
    precision, reason = resolve_precision("auto", torch.device("cuda", 1))
    assert emulation == [False] and precision == expected and set(asked) == {torch.device("cuda", 1)}
    assert reason == "Fake GPU has no native bf16" + ("; fp16 tensor cores with a gradient scaler instead"
                                                      if expected == "fp16" else "")


def test_the_processor_name_comes_from_cpuinfo_or_platform(monkeypatch, tmp_path):
    import common.device as device
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_bytes(b"processor\t: 0\nvendor\t: \xff\nmodel name\t: Vendor CPU @ 2.0GHz: rev 1 \nmodel name\t: other\n")
    monkeypatch.setattr(device, "Path", lambda name: cpuinfo if name == "/proc/cpuinfo" else Path(name))
    assert device.processor_name() == "Vendor CPU @ 2.0GHz: rev 1"
    monkeypatch.setattr(device, "Path", lambda name: tmp_path / "absent")
    monkeypatch.setattr(device.platform, "processor", lambda: "")
    monkeypatch.setattr(device.platform, "machine", lambda: "arm64")
    assert device.processor_name() == "arm64"
    monkeypatch.setattr(device.platform, "processor", lambda: "i386")
    assert device.processor_name() == "i386"


def test_the_run_prints_its_machine_first_and_warns_of_fp16_on_a_cpu(monkeypatch, capsys):
    fake_cpu(monkeypatch, amx=False, avx512_bf16=False, capability="AVX2")
    record = report_machine(CPU, "fp16")
    out, err = capsys.readouterr()
    assert out == describe_machine(record) + "\n" == (
        f"device cpu ({record['cpu']}, capability AVX2), {torch.get_num_threads()} threads, torch {torch.__version__}\n"
        "precision fp16: forced by --precision\n")
    assert err == ("warning: fp16 on a CPU is emulated: a small conv net ran 20x slower than in fp32 on an AVX2-only "
                   "CPU. fp16 is meant for older GPUs; --precision auto picks the fastest here\n")
    assert report_machine(CPU, "fp16", show=False) == record and capsys.readouterr() == ("", "")
    gpu = {**record, "gpu": "Fake GPU", "device": "cuda:0"}
    assert describe_machine(gpu).startswith(f"device cuda:0 (Fake GPU), {torch.get_num_threads()} threads")


def test_mps_runs_bf16_requests_in_fp32_and_the_scaler_is_for_the_runs_device():
    import contextlib
    assert isinstance(autocast(torch.device("mps"), "bf16"), contextlib.nullcontext)
    assert isinstance(autocast(CPU, "fp32"), contextlib.nullcontext)
    assert gradient_scaler(CPU, "fp16")._device == "cpu" and gradient_scaler(CPU, "bf16") is None


def test_the_device_is_chosen_automatically_by_default(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device() == torch.device("mps")
    with pytest.raises(UserError, match=r"^unknown device 'tpu'; choose auto, cpu, cuda or mps$"):
        select_device("tpu")
    with pytest.raises(UserError, match=r"^--device cuda: no cuda device is available here; use --device auto$"):
        select_device("cuda")
    with pytest.raises(UserError, match=r"^unknown precision 'fp8'; choose auto, bf16, fp16, fp32$"):
        resolve_precision("fp8", CPU)
    assert resolve_precision("auto", torch.device("mps")) == (
        "fp32", "mps: bf16 autocast is not used there, and fp16 has not been checked with these models "
                "(--precision fp16 tries it)")
