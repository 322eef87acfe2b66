"""Adapter zoo on the shapes world: the same personalisation task for every adapter type, and
the interference of independently trained concepts when summed (LoRA vs Orthogonal Adaptation).

Table 1: each type trains the quickstart's DreamBooth task (5 images of a red heart, a shape
never seen in pretraining, as "a red sks circle"; class prior "a red circle") from its config in
``examples/configs/adapters/`` for the same number of steps, in its own process. Reported:
trainable parameters (count, % of the UNet), ms per step, peak memory (CUDA: max allocated;
CPU: the process's peak RSS), concept fidelity (share of samples of the instance prompt that
the scorer reads as one red heart) and class-prior accuracy (share of "a red circle" samples
read as one red circle), each against the base model, over ``--type-seeds`` (training seed s,
sampling seeds 2s and 2s + 1), with each type's difference from LoRA trained and sampled with
the same seed (:func:`types_table`; ``--merge`` keeps the stored seeds and tables).

Table 2: two concepts (red heart as "a red sks circle", yellow square, a colour-shape pair held
out of pretraining, as "a yellow zwx circle") are
trained separately with LoRA and with Orthogonal Adaptation (slots 0 and 1 of a shared basis);
each concept's fidelity is measured with its adapter alone and with both adapters summed, over
``--interference-seeds`` (training seed and basis seed).

Table 4: the same DreamBooth task (LoRA) with and without the prior-preservation loss over
``--prior-seeds``: concept fidelity, class-prior accuracy and accuracy on related prompts.

Table 3: an IP-Adapter trained on single shapes (2 x --steps); samples with an image prompt
and an empty caption are read by the scorer and compared with the reference image (overall and
for base vs held-out shapes), against the same sampling without the image; text prompts are
checked with the adapter attached; a linear probe says how much colour and shape the image
embeddings carry at all.

    python benchmarks/adapters.py                    # both tables (2 CPU cores: ~30 minutes)
    python benchmarks/adapters.py --steps 60 --samples 8 --types lora sara   # a quick look
    python benchmarks/adapters.py --skip types --skip interference --skip ip-adapter \
        --out benchmarks/results/dreambooth_prior.json                       # table 4 alone (~10 minutes)
    python benchmarks/adapters.py --skip types --skip interference --skip prior \
        --out benchmarks/results/ip_adapter.json                             # table 3 alone, 3 seeds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from worker import LOSS_HEAD, emit, mean_std, run_worker, write_results  # noqa: E402

CONFIGS = HERE.parent / "examples" / "configs" / "adapters"
CONCEPTS = {
    "heart": {"shape": "heart", "colour": "red", "prompt": "a red sks circle", "class_prompt": "a red circle",
              "class_expect": ("red", "circle")},
    # a held-out colour-shape combination: the zoo VAE cannot draw stars (a VAE round trip of a
    # star is read as a circle), so the second concept must be one the latent space can hold
    "yellow-square": {"shape": "square", "colour": "yellow", "prompt": "a yellow zwx circle",
                      "class_prompt": "a yellow circle", "class_expect": ("yellow", "circle")},
}


def write_concept_images(folder: Path, concept: str) -> Path:
    """Five generated images of a held-out concept."""
    from PIL import Image

    from difforge_zoo.shapes import random_scene

    spec = CONCEPTS[concept]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(5):
        scene = random_scene(10_000 + i, split="any", num_objects=1, shapes=[spec["shape"]],
                             colours=[spec["colour"]])
        Image.fromarray(scene.image).save(folder / f"{concept}_{i}.png")
    return folder


def accuracy(backbone, prompt: str, expect: tuple[str, str], samples: int, seed: int) -> float:
    """Share of ``samples`` images for ``prompt`` that show exactly one ``expect`` (colour, shape)."""
    import torch

    from difforge_zoo.scorer import detect

    images = backbone.sample([prompt] * samples, num_steps=30, guidance_scale=4.0,
                             generator=torch.Generator().manual_seed(seed))
    hits = [len(f) == 1 and (f[0].colour, f[0].shape) == expect for f in map(detect, images)]
    return sum(hits) / len(hits)


#: class images DreamBooth generates per run (the quickstart's 48); --class-images lowers it for smoke runs
CLASS_IMAGES = [48]


def train(kind: str, concept: str, images: Path, out: Path, steps: int, extra: list[str] = ()):
    """Train one adapter on one concept from the type's example config."""
    import difforge

    spec = CONCEPTS[concept]
    overrides = [f"data.options.path={images}", f"data.options.caption={spec['prompt']}",
                 f"objective.options.class_prompt={spec['class_prompt']}", f"train.steps={steps}",
                 f"objective.options.num_class_images={CLASS_IMAGES[0]}", f"train.warmup_steps={min(20, steps)}",
                 f"output.dir={out}", "output.progress=false", *extra]
    return difforge.train(CONFIGS / f"{kind}.yaml", overrides=overrides)


def worker(kind: str, steps: int, samples: int, work: Path, seed: int = 0) -> dict:
    """Table 1 row for ``kind`` trained with ``seed`` and sampled with seeds ``2 seed`` and
    ``2 seed + 1`` (run in a fresh process so peak memory is its own)."""
    import torch

    import difforge

    images = write_concept_images(work / "images", "heart")
    result = train(kind, "heart", images, work / f"{kind}-{seed}", steps, extra=[f"train.seed={seed}"])
    tuned = difforge.load("shapes-sd-tiny", adapters=[(result.adapter_path, 1.0)])
    adapter = tuned.adapters.types["adapter_0"]
    trainable = adapter.num_trainable(tuned.denoiser, "adapter_0")
    total = sum(p.numel() for n, p in tuned.denoiser.named_parameters() if p is not None) - trainable
    spec = CONCEPTS["heart"]
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"type": kind, "seed": seed, "trainable": trainable, "trainable_pct": 100 * trainable / total,
            "ms_per_step": 1000 * result.seconds / result.steps, "peak_memory_mib": peak / 2**20,
            "steps": result.steps,
            "concept_fidelity": accuracy(tuned, spec["prompt"], (spec["colour"], spec["shape"]), samples, 2 * seed),
            "class_prior": accuracy(tuned, spec["class_prompt"], spec["class_expect"], samples, 2 * seed + 1)}


def base_row(samples: int, seed: int = 0) -> dict:
    """The base model's scores on the same prompts with the sampling seeds of :func:`worker`'s ``seed``."""
    import difforge

    base, spec = difforge.load("shapes-sd-tiny"), CONCEPTS["heart"]
    return {"seed": seed,
            "concept_fidelity": accuracy(base, spec["prompt"], (spec["colour"], spec["shape"]), samples, 2 * seed),
            "class_prior": accuracy(base, spec["class_prompt"], spec["class_expect"], samples, 2 * seed + 1)}


def type_rows(results: dict) -> tuple[list[dict], list[dict]]:
    """Table 1's base rows and adapter rows, each with its seed (files written before table 1 had
    seeds hold one base dict and rows of seed 0)."""
    base = results.get("base") or []
    base = [base] if isinstance(base, dict) else base
    return ([{"seed": 0} | b for b in base], [{"seed": 0} | r for r in results.get("types", [])])


#: the adapter every other type of table 1 is compared with: the simplest (and default) choice
BASELINE_TYPE = "lora"


def types_table(results: dict) -> str:
    """Table 1 over its seeds (docs/adapters.md quotes it): per type the mean ± std of concept
    fidelity and class prior and their difference from LoRA trained and sampled with the same
    seed, sorted by fidelity."""
    import statistics

    base, rows = type_rows(results)
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["type"], r["seed"]): r for r in rows}
    kinds = sorted({r["type"] for r in rows},
                   key=lambda k: (-statistics.mean(r["concept_fidelity"] for r in rows if r["type"] == k), k))

    def cell(values: list[float], sign: str = "") -> str:
        mean, std = mean_std(values)
        return f"{mean:{sign}.2f} ± {std:.2f}"

    lines = [f"| type | trainable | % of UNet | ms/step | peak RSS (MiB) | concept fidelity | − {BASELINE_TYPE} "
             f"| class prior | − {BASELINE_TYPE} |", "|---|---|---|---|---|---|---|---|---|",
             f"| base model | – | – | – | – | {cell([b['concept_fidelity'] for b in base])} | – | "
             f"{cell([b['class_prior'] for b in base])} | – |"]
    for kind in kinds:
        mine = [by[(kind, s)] for s in seeds if (kind, s) in by]
        paired = [(by[(kind, s)], by[(BASELINE_TYPE, s)]) for s in seeds
                  if (kind, s) in by and (BASELINE_TYPE, s) in by]
        diffs = {key: "(the baseline)" if kind == BASELINE_TYPE
                 else cell([m[key] - b[key] for m, b in paired], "+") if paired else "–"  # LoRA not run
                 for key in ("concept_fidelity", "class_prior")}
        name = f"`{kind}`" + ("" if len(mine) == len(seeds) else f" ({len(mine)} seeds)")
        trainable = f"{mine[0]['trainable']:,}".replace(",", " ")
        lines.append(f"| {name} | {trainable} | {mine[0]['trainable_pct']:.2f} | "
                     f"{statistics.mean(r['ms_per_step'] for r in mine):.0f} | "
                     f"{statistics.mean(r['peak_memory_mib'] for r in mine):.0f} | "
                     f"{cell([r['concept_fidelity'] for r in mine])} | {diffs['concept_fidelity']} | "
                     f"{cell([r['class_prior'] for r in mine])} | {diffs['class_prior']} |")
    return "\n".join(lines)


def interference(steps: int, samples: int, work: Path, seeds: list[int]) -> dict:
    """Table 2: fidelity of each concept alone vs with the other concept's adapter summed in,
    per seed (the training seed; for Orthogonal Adaptation also the seed of the shared basis)."""
    import difforge

    images = {concept: write_concept_images(work / f"images-{concept}", concept) for concept in CONCEPTS}
    rows = []
    for seed in seeds:
        for kind in ("lora", "orthogonal"):
            paths = {}
            for slot, concept in enumerate(CONCEPTS):
                extra = [f"train.seed={seed}"]
                if kind == "orthogonal":
                    extra += [f"adapter.options.slot={slot}", f"adapter.options.basis_seed={seed}"]
                run_dir = work / f"{kind}-{concept}-{seed}"
                paths[concept] = train(kind, concept, images[concept], run_dir, steps, extra).adapter_path
            for concept, spec in CONCEPTS.items():
                other = next(c for c in CONCEPTS if c != concept)
                expect = (spec["colour"], spec["shape"])
                alone = difforge.load("shapes-sd-tiny", adapters=[(paths[concept], 1.0)])
                both = difforge.load("shapes-sd-tiny", adapters=[(paths[concept], 1.0), (paths[other], 1.0)])
                a = accuracy(alone, spec["prompt"], expect, samples, 0)
                b = accuracy(both, spec["prompt"], expect, samples, 0)
                rows.append({"type": kind, "seed": seed, "concept": concept, "alone": a, "merged": b, "loss": a - b})
                print(f"interference: {rows[-1]}", flush=True)

    summary = []
    for kind in ("lora", "orthogonal"):
        for concept in [*CONCEPTS, "both concepts"]:
            mine = [r for r in rows if r["type"] == kind and concept in (r["concept"], "both concepts")]
            summary.append({"type": kind, "concept": concept,
                            **{key: mean_std([r[key] for r in mine]) for key in ("alone", "merged", "loss")}})
    return {"seeds": seeds, "rows": rows, "summary": summary}


#: prompts near the DreamBooth class whose accuracy a drifting model may lose too
RELATED_PROMPTS = {"a blue circle": ("blue", "circle"), "a red square": ("red", "square"),
                   "a green triangle": ("green", "triangle")}


def prior_preservation(steps: int, samples: int, work: Path, seeds: list[int]) -> dict:
    """Table 4: the quickstart's DreamBooth task (LoRA) with and without the prior-preservation
    loss, per training seed: concept fidelity, class-prior accuracy and the accuracy on related
    prompts (the same sampling seeds for every model, so the training seed is what varies)."""
    import difforge

    images = write_concept_images(work / "images", "heart")
    spec = CONCEPTS["heart"]

    def scores(model) -> dict:
        return {"concept_fidelity": accuracy(model, spec["prompt"], (spec["colour"], spec["shape"]), samples, 0),
                "class_prior": accuracy(model, spec["class_prompt"], spec["class_expect"], samples, 1),
                "related": sum(accuracy(model, p, e, samples, 2) for p, e in RELATED_PROMPTS.items())
                / len(RELATED_PROMPTS)}

    base = scores(difforge.load("shapes-sd-tiny"))
    rows = []
    for seed in seeds:
        for weight in (1.0, 0.0):
            result = train("lora", "heart", images, work / f"prior-{weight:g}-{seed}", steps,
                           [f"train.seed={seed}", f"objective.options.prior_loss_weight={weight}"])
            rows.append({"seed": seed, "prior_loss_weight": weight,
                         **scores(difforge.load("shapes-sd-tiny", adapters=[(result.adapter_path, 1.0)])),
                         "loss_head": result.losses[:LOSS_HEAD]})
            print(f"prior preservation: {rows[-1]}", flush=True)
    keys = ("concept_fidelity", "class_prior", "related")
    summary = [{"prior_loss_weight": w, **{k: mean_std([r[k] for r in rows if r["prior_loss_weight"] == w])
                                           for k in keys}} for w in (1.0, 0.0)]
    with_prior = {r["seed"]: r for r in rows if r["prior_loss_weight"] == 1.0}
    difference = {k: mean_std([with_prior[r["seed"]][k] - r[k] for r in rows if r["prior_loss_weight"] == 0.0])
                  for k in keys}
    return {"seeds": seeds, "base": base, "rows": rows, "summary": summary, "with_minus_without": difference}


def ip_adapter_seeds(steps: int, samples: int, work: Path, seeds: list[int]) -> dict:
    """Table 3 over training seeds: each seed's :func:`ip_adapter_table` and the mean ± std of
    its rates (overall, and per shape group)."""
    runs = []
    for seed in seeds:
        runs.append(ip_adapter_table(steps, samples, work / f"seed-{seed}", seed))
        print(f"ip-adapter seed {seed}: colour with the image {runs[-1]['image_prompted']['colour']:.2f}, "
              f"without {runs[-1]['text_only_baseline']['colour']:.2f}", flush=True)
    summary = {}
    for key in ("image_prompted", "text_only_baseline"):
        summary[key] = {m: mean_std([r[key][m] for r in runs]) for m in ("colour", "shape", "both")}
        for group in runs[0][key]["by_shape_group"]:
            summary[key][group] = {m: mean_std([r[key]["by_shape_group"][group][m] for r in runs])
                                   for m in ("colour", "shape", "both")}
    summary["text_prompts"] = {m: mean_std([r["text_prompts"][m] for r in runs]) for m in ("base", "with_adapter")}
    summary["image_embedding_linear_probe"] = runs[0]["image_embedding_linear_probe"]  # the frozen encoder's
    return {"seeds": seeds, "train_steps": runs[0]["train_steps"], "runs": runs, "summary": summary}


def ip_table(ip: dict) -> str:
    """The markdown table of :func:`ip_adapter_seeds` (docs/adapters.md quotes it)."""
    s = ip["summary"]
    lines = ["| prompt | colour | shape | colour and shape |", "|---|---|---|---|"]
    for label, key in (("image prompt, empty caption", "image_prompted"), ("empty caption, no image",
                                                                           "text_only_baseline")):
        for group, name in (("", "all"), ("base_shapes", "base shapes"), ("held_out_shapes", "held-out shapes")):
            r = s[key][group] if group else s[key]
            lines.append(f"| {label}, {name} | " + " | ".join(f"{r[m][0]:.2f} ± {r[m][1]:.2f}"
                                                              for m in ("colour", "shape", "both")) + " |")
    return "\n".join(lines)


def ip_adapter_table(steps: int, samples: int, work: Path, seed: int = 0) -> dict:
    """Table 3: image-prompted samples (empty caption) vs the text-only baseline, attributes
    read by the scorer and compared with the reference image; text prompts with the adapter
    attached but no image prompt vs the base model (``seed``: the training seed)."""
    import torch

    import difforge
    from difforge_zoo.ip_adapter import ImageEncoder, default_image_encoder
    from difforge_zoo.scorer import detect
    from difforge_zoo.shapes import BASE_SHAPES, generate

    references = generate(samples, seed=99, split="any", num_objects=1)
    prompts = [f"{'an' if s.objects[0].colour[0] in 'aeiou' else 'a'} {s.objects[0].colour} {s.objects[0].shape}"
               for s in references if s.objects[0].shape in ("circle", "square", "triangle")]
    expects = [tuple(p.split()[1:3]) for p in prompts]
    if not prompts:
        raise SystemExit(f"--samples {samples}: none of the IP-Adapter's reference images is a base shape; "
                         "use --samples 8 or more")
    result = difforge.train(CONFIGS / "ip-adapter.yaml", overrides=[
        f"train.steps={steps * 2}", f"train.seed={seed}", f"output.dir={work / 'ip-adapter'}",
        "output.progress=false"])
    model = difforge.load("shapes-sd-tiny", adapters=[(result.adapter_path, 1.0)])
    pixels = scene_pixels(references)
    encoder = ImageEncoder(default_image_encoder("shapes-sd-tiny"))
    embeds = encoder(pixels)

    def rates(pairs) -> dict:
        hits = [(any(f.colour == w.colour for f in found), any(f.shape == w.shape for f in found),
                 any((f.colour, f.shape) == (w.colour, w.shape) for f in found)) for w, found in pairs]
        n = max(1, len(hits))
        return {"colour": sum(h[0] for h in hits) / n, "shape": sum(h[1] for h in hits) / n,
                "both": sum(h[2] for h in hits) / n, "n": len(hits)}

    def match(images) -> dict:
        """Attribute match with the reference, overall and by shape group (the held-out shapes
        are ones the frozen base never learned to draw)."""
        pairs = [(scene.objects[0], detect(image)) for scene, image in zip(references, images, strict=True)]
        groups = {"base_shapes": [p for p in pairs if p[0].shape in BASE_SHAPES],
                  "held_out_shapes": [p for p in pairs if p[0].shape not in BASE_SHAPES]}
        return {**rates(pairs), "by_shape_group": {name: rates(group) for name, group in groups.items()}}

    g = torch.Generator().manual_seed(0)
    prompted = match(model.sample([""] * samples, num_steps=30, guidance_scale=4.0, generator=g,
                                  extra={"ip_adapter_image_embeds": embeds}))
    text_only = match(model.sample([""] * samples, num_steps=30, guidance_scale=4.0,
                                   generator=torch.Generator().manual_seed(0)))
    base = difforge.load("shapes-sd-tiny")

    def text_accuracy(m) -> float:
        images = m.sample(prompts, num_steps=30, guidance_scale=4.0, generator=torch.Generator().manual_seed(1))
        hits = sum(any((f.colour, f.shape) == e for f in detect(i)) for i, e in zip(images, expects, strict=True))
        return hits / len(prompts)

    return {"image_prompted": prompted, "text_only_baseline": text_only, "train_steps": result.steps,
            "loss_head": result.losses[:LOSS_HEAD],
            "image_embedding_linear_probe": image_encoder_probe(encoder),
            "text_prompts": {"n": len(prompts), "base": text_accuracy(base), "with_adapter": text_accuracy(model)}}


def scene_pixels(scenes):
    """Scenes' uint8 HWC images as a float NCHW batch in [-1, 1]."""
    import torch

    return torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() / 127.5 - 1 for s in scenes])


def linear_probe_accuracy(train_x, train_y: list[str], test_x, test_y: list[str], steps: int = 500) -> float:
    """Test accuracy of a softmax regression on standardised features (full-batch Adam)."""
    import torch

    labels = {label: i for i, label in enumerate(sorted(set(train_y)))}
    a, b = torch.tensor([labels[y] for y in train_y]), torch.tensor([labels[y] for y in test_y])
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    weight = torch.zeros(train_x.shape[1], len(labels), requires_grad=True)
    bias = torch.zeros(len(labels), requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=0.05)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy((train_x - mean) / std @ weight + bias, a)
        optimizer.zero_grad(), loss.backward(), optimizer.step()
    with torch.no_grad():
        return float((((test_x - mean) / std @ weight + bias).argmax(1) == b).float().mean())


def image_encoder_probe(encoder) -> dict:
    """What the IP-Adapter's image embeddings can carry: linear-probe accuracy of colour and
    shape on single-shape scenes (1024 to fit, 512 to test)."""

    from difforge_zoo.shapes import generate

    def embed(count: int, seed: int):
        scenes = generate(count, seed=seed, split="any", num_objects=1)
        return encoder(scene_pixels(scenes)), [s.objects[0] for s in scenes]

    (train_x, train_o), (test_x, test_o) = embed(1024, 1), embed(512, 2)
    return {attr: linear_probe_accuracy(train_x, [getattr(o, attr) for o in train_o], test_x,
                                        [getattr(o, attr) for o in test_o]) for attr in ("colour", "shape")}


def print_tables(results: dict) -> None:
    """Markdown tables of a results dict."""
    base = results.get("base")
    if results.get("types") and base:
        seeds = sorted({r["seed"] for r in type_rows(results)[1]})
        print(f"\n### Personalisation with each adapter type ({results['steps']} steps, "
              f"{results['samples']} samples per prompt, mean ± std over seeds {seeds}; − {BASELINE_TYPE}: "
              "paired by seed)\n")
        print(types_table(results))
    if results.get("interference"):
        inter = results["interference"]
        print("\n### Interference: each concept alone vs both adapters summed "
              f"(mean ± std over seeds {inter['seeds']})\n")
        print("| adapter | concept | fidelity alone | fidelity merged | loss |")
        print("|---|---|---|---|---|")
        for r in inter["summary"]:
            print(f"| {r['type']} | {r['concept']} | {r['alone'][0]:.2f} ± {r['alone'][1]:.2f} | "
                  f"{r['merged'][0]:.2f} ± {r['merged'][1]:.2f} | {r['loss'][0]:+.2f} ± {r['loss'][1]:.2f} |")
        if len(inter["seeds"]) > 1:
            print(f"\n{interference_sentence(inter)}")
    if results.get("prior_preservation"):
        print("\n### DreamBooth (LoRA) with and without prior preservation "
              f"(mean ± std over seeds {results['prior_preservation']['seeds']})\n")
        print(prior_table(results["prior_preservation"]))
    if results.get("ip_adapter") and "summary" in results["ip_adapter"]:
        ip = results["ip_adapter"]
        t, probe = ip["summary"]["text_prompts"], ip["summary"]["image_embedding_linear_probe"]
        print(f"\n### IP-Adapter ({ip['train_steps']} steps, mean ± std over seeds {ip['seeds']}): samples vs the "
              "reference image's attributes\n")
        print(ip_table(ip))
        print(f"\nImage embeddings, linear probe on single-shape scenes: colour {probe['colour']:.2f}, "
              f"shape {probe['shape']:.2f}")
        print(f"\nText prompts (colour and shape right): base {t['base'][0]:.2f}, with the IP-Adapter attached and "
              f"no image {t['with_adapter'][0]:.2f} ± {t['with_adapter'][1]:.2f}")
    elif results.get("ip_adapter"):  # one seed, as the earlier results files hold
        ip = results["ip_adapter"]
        print(f"\n### IP-Adapter ({ip['train_steps']} steps): samples vs the reference image's attributes\n")
        print("| prompt | colour | shape | colour and shape |")
        print("|---|---|---|---|")
        for label, key in (("image prompt, empty caption", "image_prompted"),
                           ("empty caption, no image", "text_only_baseline")):
            r = ip[key]
            print(f"| {label} | {r['colour']:.2f} | {r['shape']:.2f} | {r['both']:.2f} |")
            for group, g in r.get("by_shape_group", {}).items():
                print(f"| {label}: {group.replace('_', ' ')} (n={g['n']}) | {g['colour']:.2f} | {g['shape']:.2f} "
                      f"| {g['both']:.2f} |")
        if "image_embedding_linear_probe" in ip:
            probe = ip["image_embedding_linear_probe"]
            print(f"\nImage embeddings, linear probe on single-shape scenes: colour {probe['colour']:.2f}, "
                  f"shape {probe['shape']:.2f}")
        t = ip["text_prompts"]
        print(f"\nText prompts (n={t['n']}, colour and shape right): base {t['base']:.2f}, "
              f"with the IP-Adapter attached and no image {t['with_adapter']:.2f}")


def interference_sentence(inter: dict) -> str:
    """Table 2's comparison as docs/adapters.md states it: per seed, LoRA's fidelity loss minus
    Orthogonal Adaptation's (both concepts averaged), their mean and 95 % t-interval over seeds."""
    import statistics

    from scipy.stats import t

    def loss(kind: str, seed: int) -> float:
        return statistics.mean(r["loss"] for r in inter["rows"] if r["type"] == kind and r["seed"] == seed)

    gaps = [loss("lora", seed) - loss("orthogonal", seed) for seed in inter["seeds"]]
    mean, half = statistics.mean(gaps), t.ppf(0.975, len(gaps) - 1) * statistics.stdev(gaps) / len(gaps) ** 0.5
    return (f"LoRA loses {mean:.2f} more fidelity than Orthogonal Adaptation when summed (per seed: "
            + ", ".join(f"{g:+.2f}" for g in gaps) + f"; 95 % t-interval over the {len(gaps)} seeds "
            f"[{mean - half:+.2f}, {mean + half:+.2f}])")


def prior_table(prior: dict) -> str:
    """The markdown table of :func:`prior_preservation` (docs/adapters.md quotes it)."""
    keys = ("concept_fidelity", "class_prior", "related")
    b, d = prior["base"], prior["with_minus_without"]
    lines = ["| prior loss weight | concept fidelity | class prior | related prompts |", "|---|---|---|---|",
             "| base model | " + " | ".join(f"{b[k]:.2f}" for k in keys) + " |"]
    lines += [f"| {r['prior_loss_weight']:g} | " + " | ".join(f"{r[k][0]:.2f} ± {r[k][1]:.2f}" for k in keys) + " |"
              for r in prior["summary"]]
    lines.append("| with − without (paired by seed) | " + " | ".join(f"{d[k][0]:+.2f} ± {d[k][1]:.2f}"
                                                                       for k in keys) + " |")
    return "\n".join(lines)


def merged_results(out: Path, steps: int, samples: int) -> dict:
    """The ``--out`` file's results for ``--merge``: refused when it was measured on another
    model or with other ``--steps`` / ``--samples``."""
    from worker import model_fingerprint

    if not out.exists():
        return {"steps": steps, "samples": samples}
    old = json.loads(out.read_text())
    if old.get("model") != model_fingerprint("shapes-sd-tiny") or (old["steps"], old["samples"]) != (steps, samples):
        raise SystemExit(f"--merge: {out} was measured on another model or with other --steps/--samples; "
                         "rerun without --merge")
    return {k: v for k, v in old.items() if k != "model"}


def main() -> None:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--samples", type=int, default=32, help="samples per prompt for each accuracy")
    parser.add_argument("--types", nargs="*", default=None, help="adapter types for table 1 (default: all)")
    parser.add_argument("--type-seeds", nargs="*", type=int, default=[0, 1, 2],
                        help="seeds of table 1 (training seed; sampling seeds 2 s and 2 s + 1)")
    parser.add_argument("--merge", action="store_true",
                        help="start from the --out file (same model): keep its tables and its table-1 rows of the "
                             "types and seeds not rerun")
    parser.add_argument("--skip", choices=["types", "interference", "prior", "ip-adapter"], action="append",
                        default=[])
    parser.add_argument("--out", default=str(HERE / "results" / "adapters.json"))
    parser.add_argument("--class-images", type=int, default=48, help="DreamBooth class images per run")
    parser.add_argument("--interference-seeds", nargs="*", type=int, default=[0, 1, 2],
                        help="seeds of table 2 (each trains both concepts with both adapter types)")
    parser.add_argument("--prior-seeds", nargs="*", type=int, default=[0, 1, 2],
                        help="seeds of table 4 (DreamBooth with and without prior preservation)")
    parser.add_argument("--ip-seeds", nargs="*", type=int, default=[0, 1, 2], help="training seeds of table 3")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    CLASS_IMAGES[0] = args.class_images
    if args.worker:
        emit(worker(args.worker, args.steps, args.samples, Path(args.work), args.seed))
        return
    from difforge.plugins import get_registry

    results: dict = {"steps": args.steps, "samples": args.samples}
    if args.merge:
        results = merged_results(Path(args.out), args.steps, args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        if "types" not in args.skip:
            kinds = args.types or sorted(set(get_registry("adapters").owned_by("difforge")) - {"ip-adapter"})
            base, rows = type_rows(results)
            for seed in args.type_seeds:
                base = [b for b in base if b["seed"] != seed] + [base_row(args.samples, seed)]
                for kind in kinds:
                    row = run_worker(__file__, [
                        "--worker", kind, "--seed", str(seed), "--steps", str(args.steps), "--samples",
                        str(args.samples), "--class-images", str(args.class_images), "--work", tmp],
                        label=f"{kind} seed {seed}")
                    rows = [r for r in rows if (r["type"], r["seed"]) != (kind, seed)] + [row]
                    print(f"{kind} seed {seed}: {row}", flush=True)
                    results |= {"base": base, "types": rows}
                    write_results(results, args.out, model="shapes-sd-tiny")  # nothing finished is lost
        if "interference" not in args.skip:
            results["interference"] = interference(args.steps, args.samples, Path(tmp), args.interference_seeds)
        if "prior" not in args.skip:
            results["prior_preservation"] = prior_preservation(args.steps, args.samples, Path(tmp), args.prior_seeds)
        if "ip-adapter" not in args.skip:
            results["ip_adapter"] = ip_adapter_seeds(args.steps, args.samples, Path(tmp), args.ip_seeds)
    write_results(results, args.out, model="shapes-sd-tiny")
    print_tables(results)


if __name__ == "__main__":
    main()
