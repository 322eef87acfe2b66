"""Canvas methods against their naive baselines on the shapes world (difforge-canvas).

Rows of table 3 of the steering issue, shapes-sd-tiny, DDIM 25 steps, guidance 4, 3 seeds:

**Panoramas** (32 x 128 pixels: four of the model's 32-pixel windows around a 360° loop), one
per object prompt (12 prompts, every colour with a base shape, drawn by a fixed seed):

| method | what it does |
|---|---|
| direct | the UNet run once on the whole 16 x 64 latent canvas (it is convolutional) |
| multidiffusion | native 16 x 16 windows every 4 positions, their x0 estimates fused (Bar-Tal et al. 2023) |
| stitchdiffusion | the same windows plus the stitch block (the two ends side by side), pre-denoised twice |

measured by the wrap-around seam error (mean |last column - first column| of the image, what a
360° viewer shows where the loop closes) against the image's own column-to-column step. All are
decoded as a cylinder (the VAE sees the opposite edge beside each end), so the rows differ only
in the denoising.

**Segment layouts** (32 x 64: a prompt for the left half, another for the right; 12 layouts of
two objects differing in colour and shape, drawn by a fixed seed, none of them a layout tried
while building the method), 2 images per layout and seed:

| method | what it does |
|---|---|
| single-prompt | one prompt, "A on the left and B on the right", on the whole canvas (what a user does without a layout tool) |
| harmonise-only | Composite Diffusion without its scaffolding phase: every step each segment's prompt denoises the whole canvas, composited by the masks |
| composite | Composite Diffusion: the first 30 % of the steps scaffolded (each segment on a plain noised background), then harmonised |

measured by each half's shapes-alignment against its own prompt (the analytic scorer on the
32 x 32 crop), the fraction of images with both halves right, and the boundary step (mean
|difference| of neighbouring pixels across the segment border) against the column step.

**Higher resolution** (64 x 64 pixels, twice the trained size; the first 12 of the alignment
benchmark's 24 held-out two-object prompts), scored after area-downsampling to 32 x 32 by
shapes-alignment and by the object count error (|objects detected - objects asked for|, and the
fraction of images with extra objects, i.e. repetition):

| method | what it does |
|---|---|
| native | the model at its own 32 x 32 (the reference, not a high-resolution method) |
| upsample | the native image upsampled bicubically (the trivial baseline: no new detail) |
| naive | the UNet run on a 32 x 32 latent from pure noise |
| naive+attention | the same with entropy-scaled self-attention (Jin et al. 2023) |
| diffusehigh | DiffuseHigh: the native image upsampled, noised to 0.6 T and denoised at 64 x 64 with Haar structure guidance down to 0.3 T |
| diffusehigh+attention | the same with entropy-scaled attention |

**A visual condition kept** (32 x 32; 12 two-object scenes drawn by a fixed seed, the left
object a star or a heart, shapes the UNet never saw, whose box is the condition; the prompt the
scene's caption), 2 images per scene and seed, every method at COW's NFE:

| method | what it does |
|---|---|
| prompt-only | the caption alone |
| sdedit | the condition pasted on the background, noised to 0.8 T and denoised, never reset |
| paste-and-replace | from pure noise, the condition's region reset to the pasted image noised to each level |
| cow | Cyclic One-Way Diffusion (Wang et al. 2024): 3 cycles 0.8 T -> 0.4 T with the region reset, then to the end |

measured by the condition's PSNR in its region and, by the analytic scorer, whether the left
object is the condition's (shape, colour, place), whether the right one is the prompt's, and
shapes-alignment against the caption.

    python benchmarks/canvas.py            # all four parts, 3 seeds (~45 min on 2 CPU cores)
    python benchmarks/canvas.py --parts cow --merge   # one part, the file's other parts kept
    python benchmarks/canvas.py --tables   # print the tables of the results file
"""  # noqa: E501 (the method tables)

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from worker import mean_std, results_arguments, stored_results, write_results  # noqa: E402

RESULTS = HERE / "results" / "canvas.json"
HELDOUT_PROMPTS = HERE.parent / "examples" / "configs" / "alignment" / "prompts_heldout.txt"
STEPS = 25
GUIDANCE = 4.0
PANORAMA_WIDTH = 128
SCAFFOLD_FRACTION = 0.3
PROMPT_SEED = 2026
#: the layouts tried while the method was built; the benchmark's layouts exclude them
TRIED = {("red circle", "blue square"), ("green triangle", "yellow circle"), ("purple square", "red triangle"),
         ("blue circle", "green square")}


def objects(count: int, seed: int = PROMPT_SEED) -> list[str]:
    """``count`` distinct "colour shape" objects of the base shapes, drawn by ``seed``."""
    from difforge_zoo.shapes import BASE_SHAPES, COLOURS

    pool = [f"{colour} {shape}" for colour in COLOURS for shape in BASE_SHAPES]
    return random.Random(seed).sample(pool, count)


def layouts(count: int, seed: int = PROMPT_SEED) -> list[tuple[str, str]]:
    """``count`` left/right object pairs differing in colour and shape, none of them in TRIED."""
    from difforge_zoo.shapes import BASE_SHAPES, COLOURS

    pool = [(f"{ca} {sa}", f"{cb} {sb}") for ca in COLOURS for sa in BASE_SHAPES for cb in COLOURS
            for sb in BASE_SHAPES if ca != cb and sa != sb and (f"{ca} {sa}", f"{cb} {sb}") not in TRIED]
    return random.Random(seed).sample(pool, count)


def panorama_rows(backbone, seed: int, prompts: list[str], steps: int = STEPS) -> list[dict]:
    """The three panorama methods on ``prompts`` with the noise of ``seed``."""
    import torch

    from difforge_canvas.canvas import decode
    from difforge_canvas.panorama import column_step, sample_panorama, wrap_seam_error

    rows = []
    for method in ("direct", "multidiffusion", "stitchdiffusion"):
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            if method == "direct":
                channels, height, width = backbone.sample_shape()
                latents = backbone.sample(prompts, shape=(channels, height, width * PANORAMA_WIDTH // 32),
                                          num_steps=steps, guidance_scale=GUIDANCE, generator=generator, decode=False)
                images, nfe = decode(backbone, latents, wrap=width // 4), steps
            else:
                result = sample_panorama(backbone, prompts, width=PANORAMA_WIDTH, stitch=method == "stitchdiffusion",
                                         num_steps=steps, guidance_scale=GUIDANCE, generator=generator)
                images, nfe = result.images, result.nfe
        seam, step = wrap_seam_error(images), column_step(images)
        row = {"part": "panorama", "method": method, "seed": seed, "outputs": len(prompts), "nfe": nfe,
               "seconds": round(time.perf_counter() - start, 1), "wrap_seam_error": seam.mean().item(),
               "column_step": step.mean().item(), "seam_ratio": (seam / step).mean().item(),
               "per_output": {"wrap_seam_error": seam.tolist(), "column_step": step.tolist()}}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def composite_rows(backbone, seed: int, pairs: list[tuple[str, str]], per_layout: int,
                   steps: int = STEPS) -> list[dict]:
    """The three layout methods on ``pairs`` (``per_layout`` images each) with the noise of ``seed``."""
    import torch

    import difforge
    from difforge_canvas.composite import boundary_step, sample_composite, segment_scores
    from difforge_canvas.layout import Layout
    from difforge_canvas.panorama import column_step

    reward = difforge.get_registry("rewards").get("shapes-alignment")
    rows = []
    for method in ("single-prompt", "harmonise-only", "composite"):
        start = time.perf_counter()
        scores, boundaries, column_steps = [], [], []
        for index, (left, right) in enumerate(pairs):
            layout = Layout(size=(32, 64), segments=[{"prompt": f"a {left}", "box": (0, 0, 32, 32)},
                                                     {"prompt": f"a {right}", "box": (32, 0, 64, 32)}])
            generator = torch.Generator().manual_seed(seed * 1000 + index)
            with torch.no_grad():
                if method == "single-prompt":
                    channels, height, width = backbone.sample_shape()
                    images = backbone.sample([f"a {left} on the left and a {right} on the right"] * per_layout,
                                             shape=(channels, height, 2 * width), num_steps=steps,
                                             guidance_scale=GUIDANCE, generator=generator)
                    nfe = steps
                else:
                    fraction = SCAFFOLD_FRACTION if method == "composite" else 0.0
                    result = sample_composite(backbone, layout, num_samples=per_layout, scaffold_fraction=fraction,
                                              num_steps=steps, guidance_scale=GUIDANCE, generator=generator)
                    images, nfe = result.images, result.nfe
            scores.append(segment_scores(images, layout, reward))
            boundaries.append(boundary_step(images, layout))
            column_steps.append(column_step(images))
        scores = torch.cat(scores)
        row = {"part": "composite", "method": method, "seed": seed, "outputs": len(scores), "nfe": nfe,
               "seconds": round(time.perf_counter() - start, 1), "segment_alignment": scores.mean().item(),
               "both_right": (scores == 1).all(1).float().mean().item(),
               "boundary_step": torch.cat(boundaries).mean().item(),
               "column_step": torch.cat(column_steps).mean().item(),
               "per_output": {"segment_alignment": scores.tolist(), "boundary_step": torch.cat(boundaries).tolist()}}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def highres_rows(backbone, seed: int, prompts: list[str], steps: int = STEPS) -> list[dict]:
    """Native, upsampled, naive and DiffuseHigh images at twice the size, on ``prompts`` with ``seed``."""
    import torch
    import torch.nn.functional as F

    import difforge
    from difforge_canvas.highres import sample_high_resolution
    from difforge_zoo.scorer import detect, parse_prompt

    reward = difforge.get_registry("rewards").get("shapes-alignment")

    def measure(method: str, images, nfe: int, seconds: float) -> dict:
        small = F.interpolate(images.float(), size=(32, 32), mode="area")
        extra = torch.tensor([len(detect(image)) - len(parse_prompt(prompt))
                              for image, prompt in zip(small, prompts, strict=True)])
        scores = reward(small, prompts).float()
        row = {"part": "highres", "method": method, "seed": seed, "outputs": len(prompts), "nfe": nfe,
               "seconds": round(seconds, 1), "alignment": scores.mean().item(),
               "count_error": extra.abs().float().mean().item(), "repetition": (extra > 0).float().mean().item(),
               "per_output": {"alignment": scores.tolist(), "extra_objects": extra.tolist()}}
        print(json.dumps(row), flush=True)
        return row

    rows = []
    for method, options in (("diffusehigh", {"attention_scaling": False}), ("diffusehigh+attention", {}),
                            ("naive", {"structure": False, "attention_scaling": False}),
                            ("naive+attention", {"structure": False})):
        start = time.perf_counter()
        result = sample_high_resolution(backbone, prompts, num_steps=steps, guidance_scale=GUIDANCE,
                                        generator=torch.Generator().manual_seed(seed), **options)
        seconds = time.perf_counter() - start
        if method == "diffusehigh":  # its first stage is the native sample of this seed
            rows.append(measure("native", result.base, steps, 0.0))
            upsampled = F.interpolate(result.base.float(), scale_factor=2, mode="bicubic").clamp(-1, 1)
            rows.append(measure("upsample", upsampled, steps, 0.0))
        rows.append(measure(method, result.images, result.nfe, seconds))
    return rows


#: COW's cycles (3 between 0.8 T and 0.4 T, then to the end with the region kept); the baselines
#: sample at the same number of denoiser evaluations
COW_OPTIONS = {"cycles": 3, "cycle_start": 0.8, "cycle_end": 0.4}


def cow_tasks(count: int, seed: int = PROMPT_SEED) -> list[dict]:
    """``count`` two-object scenes whose left object, a star or a heart (shapes the UNet never saw,
    so the text alone cannot draw them), is the visual condition: its box plus a pixel, on the
    2-pixel latent grid; the caption names both objects."""
    import torch

    from difforge_zoo.shapes import BASE_SHAPES, COLOURS, HELD_OUT_SHAPES, draw_scene

    rng = random.Random(seed)
    tasks = []
    for _ in range(count):
        concept, other = (rng.choice(HELD_OUT_SHAPES), rng.choice(list(COLOURS))), None
        while other is None or other[1] == concept[1]:
            other = (rng.choice(BASE_SHAPES), rng.choice(list(COLOURS)))
        scene = draw_scene([(*concept, "left", "large"), (*other, "right", "large")], seed=rng.randrange(2**31))
        x0, y0, x1, y1 = scene.objects[0].box
        left, top = max(0, (x0 - 1) // 2 * 2), max(0, (y0 - 1) // 2 * 2)
        right, bottom = min(32, (x1 + 2) // 2 * 2), min(32, (y1 + 2) // 2 * 2)
        pixels = torch.from_numpy(scene.image).permute(2, 0, 1).float() / 127.5 - 1
        tasks.append({"prompt": scene.caption, "condition": pixels[:, top:bottom, left:right], "position": (left, top)})
    return tasks


def object_right(expected, found) -> float:
    """1 if the scorer's detection ``found`` has the shape, colour and place the prompt asks for."""
    return float(found is not None and (found.shape, found.colour, found.position)
                 == (expected.shape, expected.colour, expected.position))


def cow_rows(backbone, seed: int, tasks: list[dict], per_task: int, steps: int = STEPS) -> list[dict]:
    """COW and its baselines at COW's NFE on ``tasks`` (``per_task`` images each) with the noise of
    ``seed``: the prompt alone, SDEdit from the seed image (the condition pasted on the
    background, noised to 0.8 T, never reset) and paste-and-replace inpainting (from noise, the
    region reset every step)."""
    import torch

    from difforge_canvas.cow import condition_fidelity, cow_nfe, sample_cow
    from difforge_zoo.scorer import alignment, detect, match, parse_prompt

    nfe = cow_nfe(backbone, steps, **COW_OPTIONS)
    sdedit_steps = next(n for n in range(nfe, 3 * nfe) if cow_nfe(backbone, n, cycles=1) >= nfe)
    methods = {"prompt-only": None, "sdedit": {"cycles": 1, "preserve_until": 1.0, "num_steps": sdedit_steps},
               "paste-and-replace": {"cycles": 1, "cycle_start": 1.0, "num_steps": nfe},
               "cow": {**COW_OPTIONS, "num_steps": steps}}
    rows = []
    for method, options in methods.items():
        start = time.perf_counter()
        psnr, reward, kept, other, used = [], [], [], [], 0
        for index, task in enumerate(tasks):
            prompts = [task["prompt"]] * per_task
            generator = torch.Generator().manual_seed(seed * 1000 + index)
            with torch.no_grad():
                if options is None:
                    images, used = backbone.sample(prompts, num_steps=nfe, guidance_scale=GUIDANCE,
                                                   generator=generator), nfe
                else:
                    result = sample_cow(backbone, prompts, task["condition"], position=task["position"],
                                        guidance_scale=GUIDANCE, generator=generator, **options)
                    images, used = result.images, result.nfe
            psnr += condition_fidelity(images, task["condition"], task["position"]).tolist()
            for image in images:
                reward.append(alignment(image, task["prompt"])["reward"])
                (concept, found_concept), (wanted, found_other) = match(parse_prompt(task["prompt"]), detect(image))
                kept.append(object_right(concept, found_concept))
                other.append(object_right(wanted, found_other))
        row = {"part": "cow", "method": method, "seed": seed, "outputs": len(reward), "nfe": used,
               "seconds": round(time.perf_counter() - start, 1), "condition_psnr": sum(psnr) / len(psnr),
               "condition_kept": sum(kept) / len(kept), "other_object_right": sum(other) / len(other),
               "alignment": sum(reward) / len(reward),
               "per_output": {"condition_psnr": psnr, "alignment": reward}}
        print(json.dumps({k: v for k, v in row.items() if k != "per_output"}), flush=True)
        rows.append(row)
    return rows


METRICS = {"panorama": ("wrap_seam_error", "column_step", "seam_ratio"),
           "highres": ("alignment", "count_error", "repetition"),
           "composite": ("segment_alignment", "both_right", "boundary_step", "column_step"),
           "cow": ("condition_psnr", "condition_kept", "other_object_right", "alignment")}


def summarise(rows: list[dict]) -> dict:
    """``{part: {method: {metric: [mean, std], "nfe": n, "seeds": k}}}`` over seeds."""
    grouped: dict = {}
    for row in rows:
        grouped.setdefault(row["part"], {}).setdefault(row["method"], []).append(row)
    return {part: {method: {**{m: mean_std([r[m] for r in group]) for m in METRICS[part]},
                            "nfe": group[0]["nfe"], "seeds": len(group)}
                   for method, group in by_method.items()}
            for part, by_method in grouped.items()}


def tables(results: dict) -> str:
    """The panorama and composite rows, mean ± std over seeds."""
    summary = results["summary"]
    titles = {"wrap_seam_error": "wrap seam error", "column_step": "column step", "seam_ratio": "seam / column step",
              "segment_alignment": "segment alignment", "both_right": "both segments right",
              "boundary_step": "boundary step", "alignment": "shapes-alignment", "count_error": "object count error",
              "repetition": "images with extra objects", "condition_psnr": "condition PSNR (dB)",
              "condition_kept": "condition object right", "other_object_right": "prompted object right"}
    out = []
    for part, heading in (("panorama", f"**Panoramas** ({results['panorama_prompts']} prompts × {{seeds}} seeds, "
                                       f"32 × {PANORAMA_WIDTH} px), lower seam is better:"),
                          ("composite", f"**Segment layouts** ({results['layouts']} layouts × "
                                        f"{results['per_layout']} images × {{seeds}} seeds, 32 × 64 px):"),
                          ("highres", f"**Twice the trained size** ({results.get('highres_prompts')} held-out prompts "
                                      "× {seeds} seeds, 64 × 64 px scored at 32 × 32):"),
                          ("cow", f"**A visual condition kept** ({results.get('cow_tasks')} scenes × "
                                  f"{results.get('per_task')} images × {{seeds}} seeds, 32 × 32 px; the condition "
                                  "a star or heart the UNet never saw):")):
        if part not in summary:
            continue
        heading = heading.format(seeds=max(entry["seeds"] for entry in summary[part].values()))
        metrics = METRICS[part]
        out += [heading, "", "| method | NFE | " + " | ".join(titles[m] for m in metrics) + " |",
                "|---|---|" + "---|" * len(metrics)]
        for method, entry in summary[part].items():
            out.append(f"| {method} | {entry['nfe']} | "
                       + " | ".join(f"{entry[m][0]:.3f} ± {entry[m][1]:.3f}" for m in metrics) + " |")
        out.append("")
    return "\n".join(out).rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=list(METRICS), choices=list(METRICS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--prompts", type=int, default=12, help="panorama prompts")
    parser.add_argument("--layouts", type=int, default=12, help="segment layouts")
    parser.add_argument("--highres-prompts", type=int, default=12, help="held-out prompts at twice the size")
    parser.add_argument("--merge", action="store_true",
                        help="keep the stored rows of the parts not run (the results file's other parts)")
    parser.add_argument("--per-layout", type=int, default=2, help="images per layout and seed")
    parser.add_argument("--cow-tasks", type=int, default=12, help="scenes whose left object is COW's condition")
    parser.add_argument("--per-task", type=int, default=2, help="images per COW scene and seed")
    parser.add_argument("--steps", type=int, default=STEPS, help="DDIM steps")
    results_arguments(parser, RESULTS)
    args = parser.parse_args()
    out = Path(args.out)
    if args.tables:
        print(tables(stored_results(out)))
        return
    import difforge

    backbone = difforge.load("shapes-sd-tiny").eval()
    prompts = [f"a {name}" for name in objects(args.prompts)]
    pairs = layouts(args.layouts)
    cow = cow_tasks(args.cow_tasks)
    heldout = [line.strip() for line in HELDOUT_PROMPTS.read_text().splitlines() if line.strip()][:args.highres_prompts]
    rows = []
    for seed in args.seeds:
        if "panorama" in args.parts:
            rows += panorama_rows(backbone, seed, prompts, args.steps)
        if "composite" in args.parts:
            rows += composite_rows(backbone, seed, pairs, args.per_layout, args.steps)
        if "highres" in args.parts:
            rows += highres_rows(backbone, seed, heldout, args.steps)
        if "cow" in args.parts:
            rows += cow_rows(backbone, seed, cow, args.per_task, args.steps)
    stored = json.loads(out.read_text()) if args.merge and out.exists() else {}
    rows = [row for row in stored.get("rows", []) if row["part"] not in args.parts] + rows
    results = {"steps": args.steps, "guidance": GUIDANCE, "panorama_width": PANORAMA_WIDTH,
               "scaffold_fraction": SCAFFOLD_FRACTION, "panorama_prompts": len(prompts), "layouts": len(pairs),
               "per_layout": args.per_layout, "prompts": prompts, "pairs": pairs, "highres_prompts": len(heldout),
               "noise_level": 0.6, "guidance_until": 0.3, "cow_tasks": len(cow), "per_task": args.per_task,
               "cow_prompts": [task["prompt"] for task in cow], "cow_options": COW_OPTIONS, "rows": rows,
               "summary": summarise(rows)}
    write_results(results, out, model="shapes-sd-tiny")
    print(tables(results))


if __name__ == "__main__":
    main()
