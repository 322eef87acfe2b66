"""A labelled set of generated samples, to measure the analytic scorer on what models draw rather
than on what the world renders.

216 samples (the 18 single-shape prompts "a red circle" … "an orange triangle", 4 samples each)
from shapes-sd-tiny and two tuned variants: plain LoRA fine-tuning on the held-out combinations
(``examples/configs/alignment/sft-pso.yaml``) and AlignProp on colourfulness
(``examples/configs/alignment/alignprop.yaml``, which shifts colours away from the palette). Each
sample is labelled by a procedure independent of the scorer, :func:`render_match`: the nearest
render of the world's own drawing code over every shape, colour, size and position (a full-image
squared distance, background included; the scorer instead segments by palette and classifies
connected components by their geometry). Where the two disagree, or the nearest render is far,
the sample was looked at and labelled by hand (``hand_labels.json``, committed with the images).
The scorer's accuracy against these labels goes into the zoo card.

    python packages/zoo/training/label_samples.py           # samples, labels, summary (~3 min)
    python packages/zoo/training/label_samples.py --review  # a grid of the samples to check by hand
"""

from __future__ import annotations

import argparse
import json
from functools import cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
OUT = HERE / "labelled_samples"
MODEL_DIR = HERE.parent / "src" / "difforge_zoo" / "models" / "shapes-sd-tiny"

#: the tuned variants: name -> (config, training steps)
VARIANTS = {"sft-heldout": ("sft-pso.yaml", 50), "alignprop-colourfulness": ("alignprop.yaml", 25)}
SAMPLES_PER_PROMPT = 4
#: render-match residuals (RMS per channel, 0-255) above this are looked at by hand too
FAR = 40.0
#: extents and centres the candidate renders cover (every size of 1-3 object scenes, every pixel)
EXTENTS = range(7, 17)


def prompts() -> list[str]:
    """The 18 single-shape prompts of the base shapes in every colour."""
    from difforge_zoo.shapes import BASE_SHAPES, COLOURS, article

    return [f"{article(c)} {c} {s}" for c in COLOURS for s in BASE_SHAPES]


@cache
def candidate_masks() -> tuple[np.ndarray, list[tuple[str, int, float, float]]]:
    """Binary masks (M, 1024) of every shape at every extent and integer-pixel centre, drawn
    by the world's polygon/ellipse code, and what each one is."""
    from PIL import Image, ImageDraw

    from difforge_zoo.shapes import RESOLUTION, SHAPES, shape_polygon

    masks, meta = [], []
    for shape in SHAPES:
        for extent in EXTENTS:
            half = extent / 2
            for cy in np.arange(np.ceil(half), RESOLUTION - half + 1e-6):
                for cx in np.arange(np.ceil(half), RESOLUTION - half + 1e-6):
                    image = Image.new("L", (RESOLUTION, RESOLUTION), 0)
                    draw = ImageDraw.Draw(image)
                    polygon = shape_polygon(shape, float(cx), float(cy), extent)
                    if polygon is None:
                        draw.ellipse([cx - half, cy - half, cx + half - 1, cy + half - 1], fill=1)
                    else:
                        draw.polygon(polygon, fill=1)
                    masks.append(np.asarray(image, dtype=np.float32).reshape(-1))
                    meta.append((shape, extent, float(cx), float(cy)))
    return np.stack(masks), meta


def render_match(image: np.ndarray) -> dict:
    """The nearest single-object render (or the empty background) to a uint8 HWC image: its
    colour, shape, extent, centre, the RMS residual, and the margin to the nearest render of
    another colour-shape pair."""
    from difforge_zoo.shapes import BACKGROUND, COLOURS

    masks, meta = candidate_masks()
    x = image.reshape(-1, 3).astype(np.float32)
    to_background = ((x - np.array(BACKGROUND, np.float32)) ** 2).sum(1)
    colours = list(COLOURS)
    gains = np.stack([((x - np.array(COLOURS[c], np.float32)) ** 2).sum(1) - to_background for c in colours], 1)
    totals = to_background.sum() + masks @ gains  # (M, colours)
    order = np.argsort(totals, axis=None)
    best = np.unravel_index(order[0], totals.shape)
    shape, extent, cx, cy = meta[best[0]]
    label = f"{colours[best[1]]} {shape}"
    runner_up = next(totals.flat[i] for i in order[1:]
                     if f"{colours[np.unravel_index(i, totals.shape)[1]]} "
                        f"{meta[np.unravel_index(i, totals.shape)[0]][0]}" != label)
    best_total = totals[best]
    if to_background.sum() <= best_total:
        return {"label": "none", "rms": float(np.sqrt(to_background.sum() / x.size)), "margin": 0.0}
    return {"label": label, "extent": extent, "center": [cx, cy], "rms": float(np.sqrt(best_total / x.size)),
            "margin": float(np.sqrt(max(runner_up - best_total, 0.0) / x.size))}


def scorer_reading(image: np.ndarray) -> str:
    """What the analytic scorer reads: "<colour> <shape>" for exactly one object, else "none"
    (nothing) or "several"."""
    from difforge_zoo.scorer import detect

    found = detect(image)
    if len(found) == 1:
        return f"{found[0].colour} {found[0].shape}"
    return "none" if not found else "several"


def generate(work: Path) -> list[dict]:
    """Sample every prompt from the base model and the tuned variants; write the PNGs."""
    import torch
    from PIL import Image

    import difforge

    models = {"base": None}
    for name, (config, steps) in VARIANTS.items():
        result = difforge.train(ROOT / "examples" / "configs" / "alignment" / config,
                                overrides=[f"train.steps={steps}", f"output.dir={work / name}",
                                           "output.progress=false"])
        models[name] = result.adapter_path
    (OUT / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    held = [p for p in prompts() for _ in range(SAMPLES_PER_PROMPT)]
    for index, (name, adapter) in enumerate(models.items()):
        model = difforge.load("shapes-sd-tiny", adapters=[(adapter, 1.0)] if adapter else [])
        images = model.sample(held, num_steps=30, guidance_scale=4.0,
                              generator=torch.Generator().manual_seed(7000 + index))
        pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for i, (prompt, image) in enumerate(zip(held, pixels, strict=True)):
            file = f"images/{name}-{i:03d}.png"
            Image.fromarray(image).save(OUT / file)
            rows.append({"file": file, "model": name, "prompt": prompt})
    return rows


def label(rows: list[dict]) -> tuple[list[dict], dict]:
    """Render-match and scorer labels for every row, the hand labels where given, and the summary."""
    from PIL import Image

    hand_file = OUT / "hand_labels.json"
    hand = json.loads(hand_file.read_text()) if hand_file.exists() else {}
    for row in rows:
        image = np.asarray(Image.open(OUT / row["file"]).convert("RGB"))
        row["render_match"] = render_match(image)
        row["scorer"] = scorer_reading(image)
        row["needs_hand_check"] = row["scorer"] != row["render_match"]["label"] or row["render_match"]["rms"] > FAR
        row["label"] = hand.get(row["file"], row["render_match"]["label"])
    checked = [r for r in rows if r["needs_hand_check"]]
    missing = [r["file"] for r in checked if r["file"] not in hand]
    summary = {
        "samples": len(rows), "models": list(dict.fromkeys(r["model"] for r in rows)),
        "hand_checked": len(checked), "hand_checks_missing": len(missing),
        "scorer_accuracy": float(np.mean([r["scorer"] == r["label"] for r in rows])),
        "render_match_accuracy": float(np.mean([r["render_match"]["label"] == r["label"] for r in rows])),
        "scorer_accuracy_by_model": {m: float(np.mean([r["scorer"] == r["label"] for r in rows if r["model"] == m]))
                                     for m in dict.fromkeys(r["model"] for r in rows)},
        "prompt_followed": float(np.mean([r["label"] == r["prompt"].split(" ", 1)[1] for r in rows])),
    }
    return rows, summary


def review_grid(rows: list[dict], out: Path) -> Path:
    """The samples needing a hand check, enlarged 4x in a grid with their index."""
    from PIL import Image, ImageDraw

    todo = [r for r in rows if r["needs_hand_check"]]
    cols, cell = 8, 136
    grid = Image.new("RGB", (cols * cell, max(1, -(-len(todo) // cols)) * (cell + 12)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for k, row in enumerate(todo):
        image = Image.open(OUT / row["file"]).convert("RGB").resize((128, 128), Image.NEAREST)
        x, y = (k % cols) * cell, (k // cols) * (cell + 12)
        grid.paste(image, (x, y))
        draw.text((x, y + 128), str(k), fill=(0, 0, 0))
    grid.save(out)
    for k, row in enumerate(todo):
        print(k, row["file"], "prompt:", row["prompt"], "| scorer:", row["scorer"], "| render match:",
              row["render_match"]["label"], f"(rms {row['render_match']['rms']:.0f})")
    return out


def main() -> None:
    """Generate (unless the images exist), label, summarise; or write the review grid."""
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--review", metavar="PNG", help="write the samples that need a hand check to this grid")
    args = parser.parse_args()
    labels = OUT / "labels.jsonl"
    if labels.exists():
        rows = [{k: r[k] for k in ("file", "model", "prompt")} for r in map(json.loads, labels.read_text().splitlines())]
    else:
        with tempfile.TemporaryDirectory() as work:
            rows = generate(Path(work))
    rows, summary = label(rows)
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.review:
        review_grid(rows, Path(args.review))
    elif summary["hand_checks_missing"] == 0:  # complete: into the model card
        import sys

        sys.path.insert(0, str(HERE))
        from train_shapes_sd import write_model_card

        metrics = json.loads((MODEL_DIR / "metrics.json").read_text()) | {"scorer_on_generated": summary}
        (MODEL_DIR / "metrics.json").write_text(json.dumps(metrics, indent=2))
        write_model_card(MODEL_DIR, json.loads((MODEL_DIR / "training_log.json").read_text()), metrics)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
