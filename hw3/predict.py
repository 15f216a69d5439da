"""hw3: print the top-3 CIFAR-10 classes with probabilities for image files (any size; resized to 32x32)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # make `common` importable as a script

import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.functional import resize

from common.cifar import normalize
from common.cli import make_parser, run
from common.device import select_device
from common.errors import UserError
from hw3.model import load_model, predict_logits


def read_image(path: Path) -> torch.Tensor:
    """An image file as uint8 (3, 32, 32), resized with antialiasing if it is another size."""
    try:
        image = decode_image(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8),
                             mode=ImageReadMode.RGB)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception:
        raise UserError(f"{path}: not a readable image (corrupt or unsupported format)") from None
    return image if image.shape[1:] == (32, 32) else resize(image, [32, 32], antialias=True)


def main() -> None:
    parser = make_parser(__doc__, None, data=False)
    parser.add_argument("images", type=Path, nargs="+", help="image files (jpg, png, ...)")
    parser.add_argument("--checkpoint", type=Path, default=Path("hw3/results/model.pt"))
    parser.add_argument("--top", type=int, default=3, help="how many classes to show")
    args = parser.parse_args()
    device = select_device(args.device)
    model, config = load_model(args.checkpoint, device)
    images = torch.stack([read_image(path) for path in args.images]).to(device)
    batch = normalize(images, config["mean"], config["std"]).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        probabilities = predict_logits(model, batch, config["tta"]).float().softmax(dim=1)
    top = probabilities.topk(min(args.top, probabilities.shape[1]), dim=1)
    for path, values, indices in zip(args.images, top.values, top.indices):
        ranked = ", ".join(f"{config['classes'][i]} {p:.3f}" for p, i in zip(values.tolist(), indices.tolist()))
        print(f"{path}: {ranked}")


if __name__ == "__main__":
    run(main)
