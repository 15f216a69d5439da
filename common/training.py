"""The training loop every homework uses: epochs over train/val loaders, a per-epoch history, progress
bars, bf16 or fp16 autocast (fp16 with a gradient scaler), an atomic per-epoch checkpoint and `--resume`
from it; the learning-rate schedule; and the record a run of several members writes.

Under torchrun the epoch totals are summed over processes and only rank 0 prints and writes."""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from common.atomic_io import write_json
from common.checkpoint import COMPACT_CHECKPOINT, ModelConfig, load_checkpoint, load_weights, save_checkpoint
from common.cli import progress
from common.device import autocast, gradient_scaler
from common.distributed import all_reduce_sum, is_main, unwrap
from common.errors import TrainingDiverged, UserError
from common.metrics import accuracy
from common.plotting import plot_member_histories
from common.seeding import device_rng_state, set_device_rng_state

MetricFn = Callable[[Tensor, Tensor], Tensor]  # (outputs, targets) -> batch mean
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Checkpointing:
    """Where `fit` keeps its per-epoch training state, and what the checkpoint says it holds.

    `settings` (the run's hyperparameters) must match when resuming; `config` is what inference needs.
    """

    path: Path
    kind: str
    config: ModelConfig | dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    resume: bool = False


@dataclass
class Optimization:
    """How each training batch updates the weights: the gradients' norm clipped to `grad_clip` (if set),
    an `optimizer` step, then a `scheduler` step (if set)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    grad_clip: float | None = None


def warmup_linear_decay(optimizer: torch.optim.Optimizer, total_steps: int,
                        warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Ramp the learning rate linearly from ~0 to its peak over `warmup_steps`, then linearly to 0; stepped
    once per batch."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def run_epoch(model: nn.Module, loader: Iterable, loss_fn: LossFn, optimization: Optimization | None = None, *,
              device: torch.device, precision: str = "fp32", metrics: dict[str, MetricFn] | None = None,
              progress: tqdm | None = None, scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One pass over `loader` (batches are `(*inputs, target)`): trains if given an `optimization` (through
    `scaler` if given: fp16), else evaluates without gradients. Returns the loss and metrics averaged
    over samples, `samples`, and with a scaler `skipped_steps` (steps it skipped for inf/nan gradients)."""
    training = optimization is not None
    if training:
        optimizer, scheduler, grad_clip = optimization.optimizer, optimization.scheduler, optimization.grad_clip
    model.train(training)
    metrics = metrics or {}
    # Each step's loss and metrics stay on the device, to be summed and read once at the end: no step
    # waits on the host (except to show the loss on a progress bar).
    losses, values, sizes, lrs, skipped = [], [], [], [], 0
    with torch.set_grad_enabled(training):
        for batch in loader:
            *inputs, target = (t.to(device, non_blocking=True) for t in batch)
            with autocast(device, precision):
                output = model(*inputs)
            output = output.float()
            loss = loss_fn(output, target)
            if training:
                lrs.append(optimizer.param_groups[0]["lr"])
                optimizer.zero_grad(set_to_none=True)
                if scaler is None:
                    loss.backward()
                    if grad_clip:
                        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    optimizer.step()
                else:  # fp16: backward on the scaled loss; a step with inf/nan gradients is skipped
                    scale = scaler.get_scale()
                    scaler.scale(loss).backward()
                    if grad_clip:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    skipped += scaler.get_scale() < scale  # the scale backs off after each skipped step
                if scheduler is not None:
                    scheduler.step()
            losses.append(loss.detach())
            sizes.append(len(target))
            if metrics:
                with torch.no_grad():
                    values.append(torch.stack([fn(output, target) for fn in metrics.values()]))
            if progress is not None and not progress.disable:
                progress.update(1)
                progress.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    # samples, loss sum, metric sums, non-finite losses (summed over torchrun processes)
    dtype = torch.float32 if device.type == "mps" else torch.float64
    totals = torch.zeros(3 + len(metrics), dtype=dtype, device=device)
    not_finite = torch.zeros(0, dtype=torch.bool, device=device)
    if sizes:
        weights = torch.tensor(sizes, dtype=dtype).to(device)
        steps = torch.stack(losses).to(dtype)
        not_finite = ~torch.isfinite(steps)
        totals[0], totals[1], totals[-1] = weights.sum(), steps @ weights, not_finite.sum()
        if metrics:
            totals[2:-1] = weights @ torch.stack(values).to(dtype)
    totals = all_reduce_sum(totals).cpu()
    if totals[-1] > 0:
        bad = not_finite.nonzero().ravel().tolist()
        where = ("in evaluation" if not training else "in another process" if not bad
                 else f"at step {bad[0] + 1} of {len(lrs)} (lr {lrs[bad[0]]:.3g})")
        raise TrainingDiverged(f"the loss became nan or infinite {where}")
    if totals[0] == 0:
        raise UserError("a data loader produced no batches (is the dataset empty?)")
    means = (totals[1:-1] / totals[0]).tolist()
    result = {**dict(zip(["loss", *metrics], means)), "samples": int(totals[0])}
    return result if scaler is None else {**result, "skipped_steps": skipped}


def evaluate(model: nn.Module, loader: Iterable, loss_fn: LossFn, *, device: torch.device,
             precision: str = "fp32", metrics: dict[str, MetricFn] | None = None) -> dict[str, float]:
    """Loss and metrics of `model` over `loader`, averaged over samples, in eval mode."""
    result = run_epoch(model, loader, loss_fn, device=device, precision=precision, metrics=metrics)
    del result["samples"]
    return result


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, *, device: torch.device, precision: str = "fp32",
            forward: Callable[..., Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """All outputs and targets over `loader`, concatenated on the CPU, with `model` in eval mode;
    `forward` (e.g. test-time augmentation around `model`) replaces `model(...)` if given."""
    model.eval()
    forward = forward or model
    outputs, targets = [], []
    for batch in loader:
        *inputs, target = (t.to(device, non_blocking=True) for t in batch)
        with autocast(device, precision):
            outputs.append(forward(*inputs).float().cpu())
        targets.append(target.cpu())
    return torch.cat(outputs), torch.cat(targets)


def fit(model: nn.Module, loss_fn: LossFn, optimization: Optimization, train_loader: Iterable,
        val_loader: Iterable | None, *, epochs: int, metrics: dict[str, MetricFn] | None = None,
        precision: str = "fp32", checkpointing: Checkpointing | None = None,
        desc: str | None = "") -> dict[str, list[float]]:
    """Train for `epochs` on the device of `model`'s weights, validating after each; returns the history (one
    list per quantity). `desc` labels the progress bars and epoch lines; None prints nothing.

    With `checkpointing`, the full training state is saved atomically after every epoch, and
    `checkpointing.resume` continues from it. A loader with `set_epoch` gets it called each epoch.
    In fp16 the history also counts each epoch's `skipped_steps`.
    """
    metrics = metrics or {}
    device = next(model.parameters()).device
    history: dict[str, list[float]] = {"epoch": [], "lr": [], "seconds": [], "samples_per_second": []}
    optimizer, scheduler = optimization.optimizer, optimization.scheduler
    scaler = gradient_scaler(device, precision)
    start = 0
    if checkpointing is not None and checkpointing.resume:
        start, history = _restore(checkpointing, model, optimizer, scheduler, scaler, device)
    quiet = desc is None or not is_main()
    for epoch in range(start + 1, epochs + 1):
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        began = time.perf_counter()
        with progress(total=len(train_loader), desc=f"{desc or ''} epoch {epoch}/{epochs}".strip(),
                      quiet=quiet, leave=False) as bar:
            try:
                train = run_epoch(model, train_loader, loss_fn, optimization, device=device, precision=precision,
                                  metrics=metrics, progress=bar, scaler=scaler)
            except TrainingDiverged as err:
                kept = (f"the checkpoint after epoch {epoch - 1} is kept in {checkpointing.path}"
                        if checkpointing is not None and epoch > 1 else "nothing was saved")
                raise TrainingDiverged(f"training diverged in epoch {epoch}: {err}; {kept}. "
                                       "Try a lower --lr.") from None
        train_seconds = time.perf_counter() - began
        samples = train.pop("samples")
        skipped = {"skipped_steps": train.pop("skipped_steps")} if scaler is not None else {}
        val = {} if val_loader is None else evaluate(
            model, val_loader, loss_fn, device=device, precision=precision, metrics=metrics)
        seconds = time.perf_counter() - began
        _record(history, epoch=epoch, lr=lr, seconds=seconds,
                samples_per_second=samples / train_seconds, **skipped,
                **{f"train_{k}": v for k, v in train.items()}, **{f"val_{k}": v for k, v in val.items()})
        if checkpointing is not None and is_main():
            _save(checkpointing, model, optimizer, scheduler, scaler, device, epoch, history)
        if not quiet:
            print(_epoch_line(history, epochs, desc), flush=True)
    return history


def _record(history: dict[str, list[float]], **values: float) -> None:
    for key, value in values.items():
        history.setdefault(key, []).append(value)


def _epoch_line(history: dict[str, list[float]], epochs: int, desc: str) -> str:
    parts = [f"{desc} epoch {history['epoch'][-1]:>3}/{epochs}".strip()]
    for key, values in history.items():
        if key.startswith(("train_", "val_")):
            parts.append(f"{key} {values[-1]:.4f}")
    parts.append(f"{history['seconds'][-1]:.1f}s")
    return "  ".join(parts)


def _save(spec: Checkpointing, model, optimizer, scheduler, scaler, device: torch.device, epoch: int,
          history: dict[str, list[float]]) -> None:
    save_checkpoint(
        spec.path, kind=spec.kind, model=unwrap(model), config=spec.config, settings=spec.settings,
        epoch=epoch, history=history, optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict() if scheduler is not None else None,
        scaler=scaler.state_dict() if scaler is not None else None,
        torch_rng=torch.get_rng_state(), device_rng=device_rng_state(device),
    )


def _restore(spec: Checkpointing, model, optimizer, scheduler, scaler, device: torch.device) -> tuple[int, dict]:
    if not Path(spec.path).is_file():
        raise UserError(f"--resume: no checkpoint at {spec.path}; run once without --resume first")
    state = load_checkpoint(spec.path, kind=spec.kind,
                            required=("settings", "epoch", "history", "optimizer", "torch_rng"))
    changed = sorted(k for k in set(spec.settings) | set(state["settings"])
                     if spec.settings.get(k) != state["settings"].get(k))
    if changed:
        diffs = ", ".join(f"{k}: {state['settings'].get(k)!r} -> {spec.settings.get(k)!r}"
                          for k in changed)
        raise UserError(f"{spec.path}: cannot resume with different settings ({diffs})")
    load_weights(unwrap(model), state["model"], spec.path)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("device_rng") is not None:
        set_device_rng_state(device, state["device_rng"])
    if is_main():
        print(f"resumed from {spec.path} after epoch {state['epoch']}", flush=True)
    return state["epoch"], state["history"]


# --- what a run of one or more members records ------------------------------------------------------
def join_histories(histories: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """The members' training histories one after another, epochs numbered on from 1."""
    history = {key: [value for h in histories for value in h[key]] for key in histories[0]}
    history["epoch"] = list(range(1, len(history["epoch"]) + 1))
    return history


def mean_throughput(histories: list[dict[str, list[float]]]) -> float:
    """Training samples per second, averaged over every member's epochs."""
    rates = [rate for h in histories for rate in h["samples_per_second"]]
    return sum(rates) / len(rates)


def write_training_record(out: Path, model: nn.Module, histories: list[dict], *, kind: str, config: ModelConfig,
                          plot_name: str, title: str, compact: bool = False) -> None:
    """history.json (the members' epochs one after another), model.pt (and, if `compact`, its int8 copy
    COMPACT_CHECKPOINT), and each member's curves."""
    write_json(out / "history.json", join_histories(histories))
    save_checkpoint(out / "model.pt", kind=kind, model=model, config=config)
    if compact:
        save_checkpoint(out / COMPACT_CHECKPOINT, kind=kind, model=model, config=config, compact=True)
    plot_member_histories(histories, ["loss", "acc"], out / plot_name, title=title)


def validation_record(model: nn.Module, histories: list[dict], loader: Iterable | None, *,
                      device: torch.device, precision: str) -> dict:
    """metrics.json's validation fields: `final_val_acc` of the model reported (the members' vote for an
    ensemble) and `member_val_acc`, each member's last epoch; None without a validation split."""
    if loader is None:
        return {"final_val_acc": None, "member_val_acc": None}
    member_accs = [h["val_acc"][-1] for h in histories]
    if len(member_accs) == 1:
        return {"final_val_acc": member_accs[0], "member_val_acc": member_accs}
    acc = evaluate(model, loader, nn.NLLLoss(), device=device, precision=precision, metrics={"acc": accuracy})["acc"]
    if is_main():  # every process evaluates its shard; one prints
        print(f"ensemble of {len(histories)}: validation accuracy {100 * acc:.2f}%", flush=True)
    return {"final_val_acc": acc, "member_val_acc": member_accs}


def member_checkpointing(out_dir: Path, member: int, members: int, kind: str, config: ModelConfig, settings: dict,
                         resume: bool) -> Checkpointing:
    """Where member `member` (from 0) keeps its training state; on resume, a later member that never
    saved one starts afresh."""
    state = out_dir / "train_state" / ("last.pt" if members == 1 else f"member{member + 1}.pt")
    return Checkpointing(state, kind, config, settings, resume=resume and (member == 0 or state.exists()))


def member_label(member: int, members: int) -> str:
    """The progress label of member `member` (from 0) of `members`: "member 2/3", or "" for one alone."""
    return f"member {member + 1}/{members}" if members > 1 else ""
