"""Device choice (--device auto|cpu|cuda|mps), precision choice (--precision auto|bf16|fp16|fp32), the
matching autocast context and gradient scaler, and a record of the machine a run used."""

import contextlib
import platform
import sys
from pathlib import Path

import torch

from common.errors import UserError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def select_device(name: str = "auto") -> torch.device:
    """The requested device; `auto` picks cuda, then mps, then cpu. Asking for an absent one is an error."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        return torch.device(next(kind for kind in ("cuda", "mps", "cpu") if available[kind]))
    if name not in available:
        raise UserError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    if not available[name]:
        raise UserError(f"--device {name}: no {name} device is available here; use --device auto")
    return torch.device(name)


def bf16_units() -> list[str]:
    """The bf16 units this CPU has: AMX, AVX-512 BF16, or none."""
    return [name for name, present in (("AMX", torch.cpu._is_amx_tile_supported()),
                                       ("AVX-512 BF16", torch.cpu._is_avx512_bf16_supported())) if present]


def machine_class(device: torch.device) -> str:
    """The class of machine a time belongs to, in words: the GPU, or the CPU with its bf16 units and
    kernel capability (e.g. 'AMD EPYC, AVX-512 BF16, capability AVX512, 2 threads')."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"{processor_name()} (mps)"
    units = " and ".join(bf16_units()) or "no native bf16"
    return (f"{processor_name()}, {units}, capability {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads")


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether `device` runs bf16 matmuls and convolutions in hardware, and the reason in words."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{torch.cuda.get_device_name(device)} has native bf16"
        return False, f"{torch.cuda.get_device_name(device)} has no native bf16"
    if device.type != "cpu":
        return False, f"bf16 autocast is not used on {device.type}"
    capability = torch.backends.cpu.get_cpu_capability()
    units = bf16_units()
    if not units:
        return False, f"this CPU has no native bf16 (capability {capability}); bf16 would be emulated"
    if capability in ("DEFAULT", "AVX2", "NO AVX"):  # kernels capped below AVX-512, e.g. ATEN_CPU_CAPABILITY
        return False, f"PyTorch's CPU kernels run at capability {capability}, where bf16 is emulated"
    return True, f"this CPU has native bf16 ({' and '.join(units)})"


def resolve_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """The precision to train or evaluate in and why: `auto` is bf16 where `device` runs it natively;
    else fp16 (with a gradient scaler) on a CUDA GPU with tensor cores but no bf16 (compute capability
    7.x: V100, T4); else fp32. `bf16`, `fp16` and `fp32` are taken as given."""
    if requested not in PRECISIONS:
        raise UserError(f"unknown precision {requested!r}; choose {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested, "forced by --precision"
    if device.type == "mps":  # no native bf16 autocast there; fp16 would be, but no run has checked it
        return "fp32", ("mps: bf16 autocast is not used there, and fp16 has not been checked with these "
                        "models (--precision fp16 tries it)")
    native, reason = native_bf16(device)
    if native:
        return "bf16", reason
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (7, 0):
        return "fp16", f"{reason}; fp16 tensor cores with a gradient scaler instead"
    return "fp32", reason


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to bf16 or fp16 when `precision` says so (bf16 on cpu and cuda only: mps keeps fp32);
    a no-op for 'fp32'."""
    if precision not in ("bf16", "fp16", "fp32"):
        raise UserError(f"unknown precision {precision!r}; choose bf16, fp16 or fp32")
    if precision == "fp32" or (precision == "bf16" and device.type == "mps"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def gradient_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """fp16's loss scaler (fp16 gradients underflow without it); None for bf16 and fp32, which need none."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def processor_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), or what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_record(device: torch.device, requested_precision: str) -> dict:
    """The precision chosen for `device` (see `resolve_precision`) and what a reader needs to place a
    run's numbers: device, processor or GPU, CPU capability, threads and the torch version."""
    precision, reason = resolve_precision(requested_precision, device)
    return {
        "machine_class": machine_class(device),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": processor_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "precision": precision,
        "precision_reason": reason,
        "torch": torch.__version__,
    }


def describe_machine(record: dict) -> str:
    """A `machine_record` as the two lines a run prints first."""
    where = record["gpu"] or f"{record['cpu']}, capability {record['cpu_capability']}"
    return (f"device {record['device']} ({where}), {record['threads']} threads, torch {record['torch']}\n"
            f"precision {record['precision']}: {record['precision_reason']}")


def report_machine(device: torch.device, requested_precision: str, *, show: bool = True) -> dict:
    """The run's `machine_record`, printed (when `show`) as the run's first lines, with a warning for
    fp16 on a CPU, which has no fast fp16 kernels."""
    record = machine_record(device, requested_precision)
    if show:
        print(describe_machine(record), flush=True)
        if device.type == "cpu" and record["precision"] == "fp16":
            print("warning: fp16 on a CPU is emulated: a small conv net ran 20x slower than in fp32 on an "
                  "AVX2-only CPU. fp16 is meant for older GPUs; --precision auto picks the fastest here",
                  file=sys.stderr, flush=True)
    return record
