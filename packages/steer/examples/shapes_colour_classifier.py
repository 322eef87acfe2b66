"""Train the clean classifier PPAP starts from on the zoo's shapes world: the colour of the
objects of a scene, read from the VAE latents of shapes-sd-tiny (the space its UNet denoises).

Labels come from the world's ground truth (a scene's soft target is the share of its objects in
each colour), inputs are clean latents only: this is the "off-the-shelf" classifier that has
never seen noise. Held-out accuracy is measured on scenes of other seeds.

    python packages/steer/examples/shapes_colour_classifier.py --out colour-classifier   # ≈ 1 min on 2 cores
    difforge train-guiders --model shapes-sd-tiny --classifier colour-classifier --out colour-guiders
    difforge guide --model shapes-sd-tiny --guider colour-guiders --target red --scale 8 --out red.png
"""

from __future__ import annotations

import argparse
import json

import torch

#: the class names of the classifier, in logit order: the world's palette
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")


def colour_dataset(backbone, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` scenes of the shapes world (any colour and shape) as clean latents, with soft
    colour targets from their ground truth."""
    import numpy as np

    from difforge_zoo import shapes

    scenes = shapes.generate(count, seed=seed, split="any")
    pixels = torch.from_numpy(np.stack([scene.image for scene in scenes])).permute(0, 3, 1, 2).float() / 127.5 - 1
    latents = torch.cat([backbone.encode_images(pixels[i:i + 256], generator=torch.Generator().manual_seed(seed + i))
                         for i in range(0, count, 256)])
    targets = torch.zeros(count, len(COLOURS))
    for row, scene in enumerate(scenes):
        for item in scene.objects:
            targets[row, COLOURS.index(item.colour)] += 1.0 / len(scene.objects)
    return latents, targets


def train_colour_classifier(backbone, *, count: int = 4000, steps: int = 800, seed: int = 0):
    """The clean colour classifier of shapes-sd-tiny's latents, trained on ``count`` scenes."""
    from difforge_steer.ppap import LatentClassifier, train_classifier

    torch.manual_seed(seed)
    latents, targets = colour_dataset(backbone, count, seed)
    classifier = LatentClassifier(in_channels=latents.shape[1], labels=COLOURS)
    train_classifier(classifier, latents, targets, steps=steps, generator=torch.Generator().manual_seed(seed))
    return classifier


@torch.no_grad()
def colour_accuracy(classifier, latents: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of scenes whose top-scoring colour is one of the scene's colours."""
    top = classifier(latents).argmax(-1)
    return float((targets.gather(1, top.view(-1, 1)) > 0).float().mean())


def main() -> None:
    """Train, measure on held-out scenes, save (safetensors + config)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes-sd-tiny", help="the diffusion model whose latents it reads")
    parser.add_argument("--out", required=True, help="output folder (a LatentClassifier, save_pretrained layout)")
    parser.add_argument("--count", type=int, default=4000, help="training scenes")
    parser.add_argument("--steps", type=int, default=800, help="training steps (batch 64)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import difforge

    backbone = difforge.load(args.model).eval()
    classifier = train_colour_classifier(backbone, count=args.count, steps=args.steps, seed=args.seed)
    held_out = colour_dataset(backbone, 1000, seed=args.seed + 10_000)
    report = {"held_out_accuracy": colour_accuracy(classifier, *held_out), "training_scenes": args.count}
    classifier.save_pretrained(args.out, safe_serialization=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
