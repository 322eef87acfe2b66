"""Inference-time steering against best-of-N at equal denoiser evaluations (difforge-steer).

Table 1 of the steering issue: the mean reward of the returned samples against the denoiser
evaluations spent per sample (NFE; a guided evaluation counts once), for

| method | what it does | cost per sample (n steps, k candidates) |
|---|---|---|
| base | one sample (the setting's plain sampler) | n |
| base-ddpm | one sample with DDPM, the proposal FK and SVDD start from | n |
| best-of-n | k independent samples (the plain sampler), the highest-reward one kept | k n |
| fk | Feynman–Kac steering: k DDPM particles, potential `max`, λ = 10, resampled every 5 steps | k n |
| svdd | SVDD-PM: k DDPM candidates per step, the one whose x0 estimate scores highest kept | 1 + (n − 1) k |

in four settings:

| setting | model | prompts | reward steered | plain sampler |
|---|---|---|---|---|
| shapes-alignment | shapes-sd-tiny (25 steps, guidance 4) | the 24 held-out two-shape prompts of the alignment benchmark | shapes-alignment | DDIM |
| shapes-compressibility | shapes-sd-tiny (25 steps, guidance 4) | the same | jpeg-compressibility (not differentiable) | DDIM |
| music-adherence | music-sd-tiny (50 steps, guidance 3) | the audio plugin's 12 held-out captions | music-caption-adherence | DDPM |
| music-adherence-tango2 | music-sd-tiny + the Tango 2 DPO LoRA | the same | the same | DDPM |

Every sample is also scored by the setting's other rewards (the alignment of the compressibility-
steered images shows what steering costs the prompt). Each seed draws other noise for the same
prompts (``--outputs`` per seed, the prompts repeated evenly); the tables give mean ± std over
seeds. The shapes-alignment rows are comparable with the alignment benchmark's fine-tuned LoRAs
(same prompts, steps, guidance, DDIM): they are printed beside them from
``benchmarks/results/alignment.json``.

    python benchmarks/steering.py --settings shapes-alignment                 # k = 2, 4, 8 (~20 min)
    python benchmarks/steering.py --settings music-adherence --particles 4 --methods base best-of-n fk --merge
    python benchmarks/steering.py --settings shapes-compressibility --particles 2 4 --merge
    python benchmarks/steering.py --settings music-adherence-tango2 --particles 4 --methods base best-of-n fk --merge
    python benchmarks/steering.py --tables            # print the tables of the results file

The stored results were measured with these four commands (24 outputs per seed), on 2 CPU cores;
each music setting takes about 17 minutes.
"""  # noqa: E501 (the settings table)

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from worker import mean_std, model_fingerprint, results_arguments, stored_results, write_results  # noqa: E402

RESULTS = HERE / "results" / "steering.json"
SHAPES_PROMPTS = ROOT / "examples" / "configs" / "alignment" / "prompts_heldout.txt"
MUSIC_PROMPTS = ROOT / "plugins" / "audio" / "recipes" / "prompts_heldout.txt"

#: setting -> model, adapters, prompts file, steps, guidance, reward steered, all rewards measured, plain sampler
SETTINGS = {
    "shapes-alignment": ("shapes-sd-tiny", [], SHAPES_PROMPTS, 25, 4.0, "shapes-alignment",
                         ["shapes-alignment", "jpeg-compressibility"], "ddim"),
    "shapes-compressibility": ("shapes-sd-tiny", [], SHAPES_PROMPTS, 25, 4.0, "jpeg-compressibility",
                               ["jpeg-compressibility", "shapes-alignment"], "ddim"),
    "music-adherence": ("music-sd-tiny", [], MUSIC_PROMPTS, 50, 3.0, "music-caption-adherence",
                        ["music-caption-adherence"], "ddpm"),
    "music-adherence-tango2": ("music-sd-tiny", ["music-sd-tiny-tango2"], MUSIC_PROMPTS, 50, 3.0,
                               "music-caption-adherence", ["music-caption-adherence"], "ddpm"),
}
METHODS = ("base", "base-ddpm", "best-of-n", "fk", "svdd")
PARTICLES = (2, 4, 8)
#: rows of candidates sampled in one batch
CHUNK_ROWS = 192


def load_model(name: str, adapters: list[str]):
    """A zoo or audio model by name, with the named LoRAs of the audio plugin."""
    import difforge

    if adapters:
        from difforge_audio.models import load_base

        return load_base(name, [(a, 1.0) for a in adapters]).eval()
    return difforge.load(name).eval()


def run_method(backbone, setting: str, method: str, k: int, seed: int, outputs: int) -> dict:
    """One method at ``k`` candidates on every prompt of ``setting``, ``outputs // prompts`` outputs each."""
    import torch

    import difforge

    _, _, prompts_file, steps, guidance, steered, measured, plain = SETTINGS[setting]
    distinct = [p for p in prompts_file.read_text().splitlines() if p.strip()][:outputs]
    prompts = [p for p in distinct for _ in range(max(1, outputs // len(distinct)))]
    rewards = difforge.get_registry("rewards")
    name, options = {"base": ("best-of-n", {"sampler": plain}), "base-ddpm": ("best-of-n", {"sampler": "ddpm"}),
                     "best-of-n": ("best-of-n", {"sampler": plain}), "fk": ("fk", {}), "svdd": ("svdd", {})}[method]
    chunk = max(1, CHUNK_ROWS // k)
    start = time.perf_counter()
    samples, nfe = [], None
    for i in range(0, len(prompts), chunk):
        result = difforge.get_registry("steering").get(name)(
            backbone, prompts[i : i + chunk], reward=rewards.get(steered), particles=k, num_steps=steps,
            guidance_scale=guidance, generator=torch.Generator().manual_seed(10_000 * seed + i), **options)
        samples.append(result.samples)
        nfe = result.nfe
    seconds = time.perf_counter() - start
    images = torch.cat(samples)
    scores = {reward: rewards.get(reward)(images.float(), prompts).tolist() for reward in measured}
    return {"setting": setting, "method": method, "particles": k, "seed": seed, "nfe": nfe,
            "seconds": round(seconds, 1), "outputs": len(prompts),
            "rewards": {reward: sum(values) / len(values) for reward, values in scores.items()}}


def measure(settings: list[str], seeds: list[int], outputs: int, particles: list[int],
            methods: list[str]) -> list[dict]:
    """Every method of every setting at every seed; prints each row as it lands."""
    rows = []
    for setting in settings:
        model, adapters = SETTINGS[setting][:2]
        backbone = load_model(model, adapters)
        for seed in seeds:
            for method in methods:
                for k in [1] if method.startswith("base") else particles:
                    row = run_method(backbone, setting, method, k, seed, outputs)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    """``{setting: {"method k": {nfe, seeds, seconds, rewards: {reward: [mean, std]}, minus_best_of_n}}}``
    over seeds; ``minus_best_of_n``: the steered reward's difference from best-of-N at the same k,
    paired by seed (``[mean, std]``; steering methods only)."""
    grouped: dict = {}
    for row in rows:
        grouped.setdefault(row["setting"], {}).setdefault(f"{row['method']} {row['particles']}", []).append(row)
    summary: dict = {}
    for setting, by_key in grouped.items():
        steered = SETTINGS[setting][5]
        summary[setting] = {}
        for key, group in by_key.items():
            entry = {"method": group[0]["method"], "particles": group[0]["particles"], "nfe": group[0]["nfe"],
                     "seeds": len(group), "seconds": mean_std([r["seconds"] for r in group])[0],
                     "rewards": {reward: mean_std([r["rewards"][reward] for r in group])
                                 for reward in group[0]["rewards"]}}
            baseline = {r["seed"]: r["rewards"][steered] for r in by_key.get(f"best-of-n {group[0]['particles']}", [])}
            if group[0]["method"] in ("fk", "svdd") and baseline:
                entry["minus_best_of_n"] = mean_std([r["rewards"][steered] - baseline[r["seed"]] for r in group
                                                     if r["seed"] in baseline])
            summary[setting][key] = entry
    return summary


def fine_tuned_reference() -> dict:
    """The alignment benchmark's fine-tuned LoRAs measured like the shapes-alignment rows
    (held-out prompts, DDIM 25 steps, guidance 4): ``{run: [mean, std]}``."""
    path = HERE / "results" / "alignment.json"
    if not path.exists():
        return {}
    summary = json.loads(path.read_text())["summary"]
    return {run: summary[run]["rewards"]["shapes-alignment"]["after"] for run in ("dpo", "sft-dpo")
            if run in summary}


def tables(results: dict) -> str:
    """Table 1 per setting (reward steered and the others, against NFE; the steering methods' difference
    from best-of-N at the same k, paired by seed), and the fine-tuned LoRAs."""
    lines = []
    for setting, by_key in results["summary"].items():
        measured = SETTINGS[setting][6]
        lines += [f"### {setting} (steered: {SETTINGS[setting][5]}; {results['outputs']} outputs per seed, "
                  f"mean ± std over seeds)", "",
                  "| method | k | NFE / sample | " + " | ".join(measured) + " | − best-of-n | s / seed |",
                  "|---|---|---|" + "---|" * len(measured) + "---|---|"]
        ordered = sorted(by_key.values(), key=lambda r: (METHODS.index(r["method"]), r["particles"]))
        for r in ordered:
            cells = [f"{r['rewards'][m][0]:.3f} ± {r['rewards'][m][1]:.3f}" for m in measured]
            paired = r.get("minus_best_of_n")
            cells.append(f"{paired[0]:+.3f} ± {paired[1]:.3f}" if paired else "–")
            lines.append(f"| {r['method']} | {r['particles']} | {r['nfe']} | " + " | ".join(cells)
                         + f" | {r['seconds']:.0f} |")
        if setting == "shapes-alignment" and results.get("fine_tuned"):
            lines += ["", "Fine-tuned LoRAs on the same prompts and sampler (alignment benchmark, 3 seeds, "
                      "NFE 25):", ""]
            lines += [f"- {run}: shapes-alignment {m:.3f} ± {s:.3f}" for run, (m, s) in results["fine_tuned"].items()]
        lines.append("")
    return "\n".join(lines)


#: the rows of the summary table (difforge-steer's README): label, setting, k
SUMMARY_ROWS = (
    ("shapes-alignment, held-out prompts, k = 2 (50 NFE)", "shapes-alignment", 2),
    ("shapes-alignment, k = 4 (100 NFE)", "shapes-alignment", 4),
    ("shapes-alignment, k = 8 (200 NFE)", "shapes-alignment", 8),
    ("JPEG compressibility (−kB), k = 4", "shapes-compressibility", 4),
    ("music caption adherence, k = 4 (200 NFE)", "music-adherence", 4),
    ("music caption adherence on the Tango 2 LoRA, k = 4", "music-adherence-tango2", 4),
)


def summary_table(results: dict) -> str:
    """One line per setting and k: the steered reward's mean over seeds for the base model,
    best-of-N, FK and SVDD (difforge-steer's README quotes it)."""
    lines = ["| setting | base | best-of-N | FK | SVDD |", "|---|---|---|---|---|"]
    for label, setting, k in SUMMARY_ROWS:
        by_key, steered = results["summary"][setting], SETTINGS[setting][5]
        cells = []
        for key in ("base 1", f"best-of-n {k}", f"fk {k}", f"svdd {k}"):
            value = by_key[key]["rewards"][steered][0] if key in by_key else None
            cells.append("–" if value is None else f"{value:.3f}".replace("-", "−"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--particles", nargs="+", type=int, default=list(PARTICLES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--outputs", type=int, default=24, help="outputs per seed (the prompts repeated evenly)")
    results_arguments(parser, RESULTS)
    parser.add_argument("--merge", action="store_true", help="keep the file's rows that this run does not remeasure")
    args = parser.parse_args()
    out = Path(args.out)
    if args.tables:
        stored = stored_results(out)
        print(tables(stored))
        print(summary_table(stored))
        return
    rows = measure(args.settings, args.seeds, args.outputs, args.particles, args.methods)
    if args.merge and out.exists():
        previous = json.loads(out.read_text())
        if previous["outputs"] != args.outputs or previous["model"] != model_fingerprint():
            raise SystemExit(f"--merge: {out} was measured with other --outputs or another shapes-sd-tiny")
        def cell(r: dict) -> tuple:
            return r["setting"], r["method"], r["particles"], r["seed"]

        again = {cell(r) for r in rows}
        rows = [r for r in previous["rows"] if cell(r) not in again] + rows
    results = {"outputs": args.outputs, "rows": rows, "summary": summarise(rows),
               "fine_tuned": fine_tuned_reference()}
    write_results(results, out, model="shapes-sd-tiny")
    print(tables(results))


if __name__ == "__main__":
    main()
