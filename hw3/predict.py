"""hw3: print the top-3 CIFAR-10 classes with probabilities for image files (any size; resized to 32x32);
with --explain-png, also draw where in each image the evidence for its top class lies."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch
from torchvision.transforms.functional import resize

from common.attribution import integrated_gradients
from common.cifar import normalize, read_image
from common.cli import (RepoPath, make_parser, png_file, positive, read_each, refuse_overwriting_inputs,
                        repo_path, report_written, run)
from common.errors import UserError
from common.device import select_device
from common.plotting import new_figure, save_figure
from hw3.model import load_model, predict_logits


MAX_PIXELS = 25_000_000  # larger images are refused from their header, before decoding


def read_input(path: Path) -> torch.Tensor:
    """An image file of up to MAX_PIXELS as uint8 (3, 32, 32), resized with antialiasing if needed."""
    image = read_image(path, max_pixels=MAX_PIXELS)
    return image if image.shape[1:] == (32, 32) else resize(image, [32, 32], antialias=True)


def plot_explanations(images: torch.Tensor, attributions: torch.Tensor, titles: list[str], path: Path) -> None:
    """Each image beside a heat map of its attributions (summed over colour channels, positive only:
    the pixels that raised the top class's score above the mean image's)."""
    fig, axes = new_figure(2, len(images), panel_size=(2.4, 2.4))
    for row, (image, attribution, title) in enumerate(zip(images, attributions, titles)):
        axes[row, 0].imshow(image.permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
        axes[row, 0].set_title(title, fontsize=9)
        heat = attribution.sum(dim=0).clamp(min=0).cpu().numpy()
        axes[row, 1].imshow(image.permute(1, 2, 0).cpu().numpy(), interpolation="nearest", alpha=0.35)
        shown = axes[row, 1].imshow(heat, cmap="inferno", alpha=0.75, interpolation="bilinear")
        axes[row, 1].set_title("integrated gradients", fontsize=9)
        key = axes[row, 1].figure.colorbar(shown, ax=axes[row, 1], fraction=0.046, pad=0.04)
        key.set_label("raises the top class's\nlog-probability by", fontsize=7)
        key.ax.tick_params(labelsize=6)
        for ax in axes[row]:
            ax.axis("off")
    save_figure(fig, path)


def main() -> None:
    parser = make_parser(__doc__, None, data=False)
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files (jpg, png, ...)")
    parser.add_argument("--checkpoint", type=repo_path, default=RepoPath("hw3/results/model.pt"),
                        help="a model.pt or model_int8.pt that hw3/train.py wrote")
    parser.add_argument("--top", type=positive(), default=3, help="how many classes to show, most likely first")
    parser.add_argument("--explain-png", type=png_file, metavar="OUT.png",
                        help="also write each image beside a heat map of the evidence for its top class")
    args = parser.parse_intermixed_args()  # options may come between the inputs
    refuse_overwriting_inputs(args.explain_png, args.images, "--explain-png")
    device = select_device(args.device)
    model, config = load_model(args.checkpoint, device)
    read, unreadable = read_each(args.images, read_input, "images")  # each unreadable one said, the rest predicted
    args.images, images = [path for path, _ in read], torch.stack([image for _, image in read]).to(device)
    batch = normalize(images, config.mean, config.std).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        probabilities = predict_logits(model, batch, config.tta).float().softmax(dim=1)
    top = probabilities.topk(min(args.top, probabilities.shape[1]), dim=1)
    for path, values, indices in zip(args.images, top.values, top.indices):
        ranked = ", ".join(f"{config.classes[i]} {p:.3f}" for p, i in zip(values.tolist(), indices.tolist()))
        print(f"{path}: {ranked}")
    if args.explain_png:
        best = top.indices[:, 0]

        def top_class_score(x: torch.Tensor) -> torch.Tensor:  # log-probability of each image's top class
            return predict_logits(model, x, config.tta).float().log_softmax(dim=1).gather(1, best[:, None])[:, 0]

        attributions = integrated_gradients(top_class_score, batch)  # baseline 0: the training mean image
        titles = [f"{path.parent.name}/{path.name}: {config.classes[i]} {p:.2f}" for path, i, p in
                  zip(args.images, best.tolist(), top.values[:, 0].tolist())]
        plot_explanations(images, attributions, titles, args.explain_png)  # written atomically
        report_written(args.explain_png)
    if unreadable:
        raise UserError(f"{unreadable} of {unreadable + len(read)} images could not be read (see above)")


if __name__ == "__main__":
    run(main)
