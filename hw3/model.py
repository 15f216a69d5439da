"""CIFAR-10 models: the seed's three-conv CNN, and a compact airbench-style network for the 92% target;
the config that rebuilds either (or an ensemble of several) from a checkpoint, its loading, and test-time
augmentation."""

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from common import checkpoint
from common.checkpoint import names, whole
from common.ensemble import ensemble

CHECKPOINT_KIND = "hw3-cifar10"


class SeedCNN(nn.Module):
    """Three blocks of conv3x3 -> BatchNorm -> ReLU -> 2x2 max-pool, then a linear classifier."""

    def __init__(self, widths: tuple[int, ...], num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        layers, channels = [], 3
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        side = 32 // 2 ** len(widths)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout),
                                        nn.Linear(channels * side * side, num_classes))

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images))


class ConvGroup(nn.Module):
    """conv -> pool -> BN -> GELU -> conv -> BN -> GELU, as in airbench (BN learns only its shift)."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
        self.norm1 = _shift_only_batchnorm(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.norm2 = _shift_only_batchnorm(channels_out)
        self.pool = nn.MaxPool2d(2)
        self.act = nn.GELU()
        for conv in (self.conv1, self.conv2):  # start each conv near the identity on shared channels
            nn.init.dirac_(conv.weight.data[:conv.in_channels])

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """A fixed 2x2 whitening conv (set from the data's patch covariance), three ConvGroups, global
    max-pool and a scaled linear head; after Keller Jordan's cifar10-airbench."""

    def __init__(self, widths: tuple[int, ...], num_classes: int = 10, head_scale: float = 1 / 9):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, bias=True)  # 24 = +/- each of the 12 patch eigenvectors
        self.whiten.weight.requires_grad_(False)
        groups, channels = [], self.whiten.out_channels
        for width in widths:
            groups.append(ConvGroup(channels, width))
            channels = width
        self.groups = nn.Sequential(*groups)
        self.head = nn.Linear(channels, num_classes, bias=False)
        self.head_scale = head_scale

    @torch.no_grad()
    def init_whitening(self, images: Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters to the eigenvectors of the 2x2 patch covariance of `images`."""
        patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)  # (N, C, H', W', 2, 2)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = (eigenvectors.T / (eigenvalues[:, None] + eps).sqrt()).reshape(12, 3, 2, 2)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))

    def forward(self, images: Tensor) -> Tensor:
        x = self.groups(nn.functional.gelu(self.whiten(images)))
        x = torch.amax(x, dim=(2, 3))
        return self.head(x) * self.head_scale


def _shift_only_batchnorm(channels: int) -> nn.BatchNorm2d:
    """airbench's BatchNorm: no learned scale; its momentum 0.6 is PyTorch's 0.4 (1 - 0.6)."""
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
    norm.weight.requires_grad_(False)
    return norm


MODELS = {"cnn": SeedCNN, "airbench": AirbenchNet}


@dataclass(frozen=True)
class ModelConfig:
    """What rebuilds a trained hw3 model and feeds it images as in training; a checkpoint holds it as a dict."""

    model: str  # a key of MODELS
    widths: list[int]  # channels per conv block
    classes: list[str]  # one logit each, in this order
    mean: list[float]  # the training images' per-channel statistics, for normalising
    std: list[float]
    tta: int  # the test-time augmentation of predict_logits
    members: int = 1  # networks whose probabilities are averaged

    def member(self) -> nn.Module:
        """One freshly initialised network of the kind and widths named."""
        return MODELS[self.model](widths=tuple(self.widths), num_classes=len(self.classes))

    def build(self) -> nn.Module:
        """The whole model: one network, or an Ensemble of `members`."""
        return ensemble([self.member() for _ in range(self.members)])

    def problem(self) -> str | None:
        """What is wrong with a config read from a checkpoint (types and ranges), or None."""
        if not isinstance(self.model, str) or self.model not in MODELS:
            return f"model {self.model!r} is not one of {', '.join(MODELS)}"
        if not (isinstance(self.widths, list) and 1 <= len(self.widths) <= 5
                and all(whole(w, 1, 2048) for w in self.widths)):
            return "widths must be a list of 1 to 5 channel counts, each 1 to 2048"
        if not names(self.classes, 2, 1000):
            return "classes must be a list of 2 to 1000 names"
        for key, values in (("mean", self.mean), ("std", self.std)):
            if not (isinstance(values, list) and len(values) == 3
                    and all(isinstance(v, float) and math.isfinite(v) and (key == "mean" or v > 0) for v in values)):
                return f"{key} must be 3 finite numbers" + (" above 0" if key == "std" else "")
        if self.tta not in (0, 1, 2) or not whole(self.members, 1, 16):
            return "tta must be 0, 1 or 2, and members 1 to 16"
        return None


def load_model(path: Path, device: torch.device) -> tuple[nn.Module, ModelConfig]:
    """The model and config stored in a hw3 checkpoint, ready for inference on `device`."""
    model, config = checkpoint.load_model(path, kind=CHECKPOINT_KIND, config_type=ModelConfig)
    return model.to(device).to(memory_format=torch.channels_last).eval(), config


def predict_logits(model: nn.Module, images: Tensor, tta: int = 0) -> Tensor:
    """Logits for normalised images; `tta` 1 also averages the mirror image, 2 adds 1-pixel shifts."""
    if tta == 0:
        return model(images)
    logits = 0.5 * (model(images) + model(images.flip(-1)))
    if tta == 1:
        return logits
    padded = nn.functional.pad(images, [1] * 4, mode="reflect")
    shifted = [padded[:, :, :-2, :-2], padded[:, :, 2:, 2:]]
    shifted_logits = sum(predict_logits(model, x.contiguous(memory_format=torch.channels_last), 1)
                         for x in shifted) / 2
    return 0.5 * logits + 0.5 * shifted_logits
