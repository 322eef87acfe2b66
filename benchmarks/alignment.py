"""Alignment on the shapes world: every objective's reward gain on held-out prompts, over seeds.

Runs (each trains a LoRA on shapes-sd-tiny from ``examples/configs/alignment/<objective>.yaml``
in its own process, then samples the evaluation prompts ``--samples`` times each with a fixed
seed). The prompts are two-shape scenes that each hold one of the colour-shape combinations the
base UNet never saw (``prompts_train.txt``, 48; ``prompts_heldout.txt``, 24 others; the preference
pairs come from ``prompts_pairs.txt``, 343 that include the 48 training prompts): the base
scores 0.85 on the held-out ones, mostly by binding a colour to the wrong shape.

| run | objective | reward trained | measured on the held-out prompts |
|---|---|---|---|
| dpo | diffusion-dpo | pairs of the base's own samples ranked by shapes-alignment | alignment, win rate vs base |
| dcpo | dcpo | the same pairs, rejected captions perturbed (medium) | alignment, win rate vs base |
| dcpo-weak | dcpo | the same pairs, rejected captions perturbed weakly (one word) | alignment, win rate vs base |
| dcpo-captioned / dcpo-hybrid | dcpo | the same pairs, both images captioned by the shapes-world captioner / those captions, the rejected one perturbed (medium) | alignment, win rate vs base |
| dpo-colourfulness / dcpo-colourfulness | diffusion-dpo / dcpo (rejected captions perturbed, medium) | pairs of the base's own samples of the same prompts ranked by colourfulness, a preference the captions do not describe | colourfulness, alignment |
| d3po-alignment | d3po | labels from shapes-alignment comparisons | alignment |
| d3po-alignment-large | d3po, rounds of 32 trajectories (``D3PO_LARGE_ROUNDS``) | labels from shapes-alignment comparisons | alignment |
| d3po-compressibility | d3po, rounds of 32 trajectories (``D3PO_LARGE_ROUNDS``) | labels from jpeg-compressibility comparisons | compressibility and alignment |
| d3po-compressibility-wide | d3po, rounds of 64 trajectories (``D3PO_WIDE_ROUNDS``) | labels from jpeg-compressibility comparisons | compressibility and alignment |
| ddpo-alignment | ddpo | shapes-alignment | alignment |
| ddpo-compressibility | ddpo, rounds of 32 trajectories (``LARGE_ROUNDS``) | jpeg-compressibility | compressibility and alignment (reward hacking) |
| rlcm-compressibility | rlcm (4 steps), rounds of 32 trajectories (``LARGE_ROUNDS``) | jpeg-compressibility | compressibility at 4 steps, alignment |
| rlcm-compressibility-wide | rlcm (4 steps), rounds of 64 trajectories for 60 rounds, about DDPO's wall time (``RLCM_WIDE_ROUNDS``) | jpeg-compressibility | compressibility at 4 steps, alignment |
| alignprop-colourfulness | alignprop | colourfulness | colourfulness, alignment |
| ddpo-colourfulness | ddpo | colourfulness | colourfulness (AlignProp vs DDPO per generated sample) |
| pso-heldout | pso | 96 images of single held-out colour-shape combinations (online pairs) | alignment of 4-step consistency samples of the plain held-out combination prompts ("a blue circle") |
| seppo-heldout | seppo | 96 two-shape images holding a held-out combination, as winners; references from previous checkpoints | alignment |
| seppo-noflip / seppo-initial | seppo without the flipper / with the initial model as the only reference | as seppo-heldout |
| texforce-alignment | texforce (text-encoder LoRA) | shapes-alignment | alignment |
| texforce-compressibility | texforce (text-encoder LoRA), rounds of 32 trajectories (``LARGE_ROUNDS``) | jpeg-compressibility | compressibility and alignment |
| texforce-compressibility-wide | texforce (text-encoder LoRA), rounds of 64 trajectories (``TEXFORCE_WIDE_ROUNDS``) | jpeg-compressibility | compressibility and alignment |

The preference pairs are built once per benchmark (or ``--work`` folder) from the base model: 4
samples of each of the 343 prompts of ``prompts_pairs.txt`` (two-shape scenes holding a held-out
combination, none of them a held-out prompt), best against worst by alignment (by colourfulness
for the ``-colourfulness`` runs; ties dropped), each rejected image also given DCPO's perturbed
caption; Diffusion-DPO reads the same pairs and ignores that caption. Win rate: for each
held-out prompt and sample seed, the tuned model's alignment beats the base's (ties count half;
each row also keeps the win rate on every reward it measured). The base model's scores are
measured once per evaluation setting and shared by every seed.

    python benchmarks/alignment.py --scale 0.5          # 3 seeds (2 CPU cores: about 1.5 hours)
    python benchmarks/alignment.py --runs dpo dcpo --merge   # rerun some runs, keep the file's others
    python benchmarks/alignment.py --runs dcpo-captioned --merge --work outputs/bench   # reuse sampled pairs
    python benchmarks/alignment.py --seeds 0 --runs dpo alignprop-colourfulness --scale 0.3
"""  # noqa: E501 (the runs table)

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from worker import emit, mean_std, model_fingerprint, run_worker, write_results  # noqa: E402

CONFIGS = ROOT / "examples" / "configs" / "alignment"
WORD_GROUPS = [["red", "green", "blue", "yellow", "purple", "orange"], ["circle", "square", "triangle"],
               ["left", "right"], ["top", "bottom"], ["small", "large"]]

#: DDPO's batch recipe at CPU scale: every optimizer step is one round of 32 trajectories (4 prompts
#: x 8 samples, accumulated over 4 minibatches, so the ratio is 1 and nothing is clipped), lr 3e-3,
#: 40 rounds (1 280 samples); the configs' small rounds (16 trajectories, 4 steps each) do not move
#: compressibility within a few hundred samples
LARGE_ROUNDS = ["objective.options.samples_per_prompt=8", "objective.options.minibatch_size=8", "train.grad_accum=4",
                "objective.options.inner_epochs=1", "train.lr=3e-3", "train.steps=40"]

#: RLCM at DDPO's wall time: a 4-step round costs a third of a 10-step one, so each optimizer step
#: takes twice the trajectories (8 prompts x 8 samples, 8 minibatches accumulated) for 60 rounds
#: (3 840 samples)
RLCM_WIDE_ROUNDS = ["data.batch_size=8", "objective.options.samples_per_prompt=8", "objective.options.minibatch_size=8",
                    "train.grad_accum=8", "objective.options.inner_epochs=1", "train.lr=3e-3", "train.steps=60"]

#: the same batch structure for D3PO: 4 prompts x 4 pairs (32 trajectories) per round, 4 minibatches
#: of 4 pairs accumulated into one optimizer step per round, lr 3e-3, 40 rounds (1 280 samples)
D3PO_LARGE_ROUNDS = ["objective.options.pairs_per_prompt=4", "objective.options.minibatch_size=4", "train.grad_accum=4",
                     "objective.options.inner_epochs=1", "train.lr=3e-3", "train.steps=40"]

#: D3PO with RLCM_WIDE_ROUNDS' batch: 8 prompts x 4 pairs (64 trajectories) per optimizer step,
#: 8 minibatches of 4 pairs accumulated, 40 rounds (2 560 samples)
D3PO_WIDE_ROUNDS = ["data.batch_size=8", "objective.options.pairs_per_prompt=4", "objective.options.minibatch_size=4",
                    "train.grad_accum=8", "objective.options.inner_epochs=1", "train.lr=3e-3", "train.steps=40"]

#: TexForce with RLCM_WIDE_ROUNDS' batch: 8 prompts x 8 samples (64 trajectories) per optimizer step,
#: 40 rounds (2 560 samples); twice LARGE_ROUNDS' trajectories per step for the text encoder's noisier gradient
TEXFORCE_WIDE_ROUNDS = ["data.batch_size=8", "objective.options.samples_per_prompt=8",
                        "objective.options.minibatch_size=8", "train.grad_accum=8", "objective.options.inner_epochs=1",
                        "train.lr=3e-3", "train.steps=40"]

#: DCPO's caption strategies -> (perturbation level of the rejected caption, whether the captioner
#: describes both images): the prompt perturbed (medium, or weak: one word), the captioner's
#: descriptions, or those with the rejected one perturbed (DCPO's three strategies)
CAPTION_STRATEGIES = {"perturbed": ("medium", False), "perturbed-weak": ("weak", False),
                      "captioned": (None, True), "hybrid": ("medium", True)}

#: DCPO runs -> their caption strategy (the others: "perturbed")
DCPO_CAPTIONS = {"dcpo-weak": "perturbed-weak", "dcpo-captioned": "captioned", "dcpo-hybrid": "hybrid"}

#: DPO-family runs whose pairs are ranked by another reward than shapes-alignment
PAIR_REWARDS = {"dpo-colourfulness": "colourfulness", "dcpo-colourfulness": "colourfulness"}

#: run -> (config, overrides, rewards measured, sampling steps of the measurement)
RUNS = {
    "dpo": ("diffusion-dpo", [], ["shapes-alignment"], 25),
    "dcpo": ("dcpo", [], ["shapes-alignment"], 25),
    "dcpo-weak": ("dcpo", [], ["shapes-alignment"], 25),
    "dcpo-captioned": ("dcpo", [], ["shapes-alignment"], 25),
    "dcpo-hybrid": ("dcpo", [], ["shapes-alignment"], 25),
    "dpo-colourfulness": ("diffusion-dpo", [], ["colourfulness", "shapes-alignment"], 25),
    "dcpo-colourfulness": ("dcpo", [], ["colourfulness", "shapes-alignment"], 25),
    "d3po-alignment": ("d3po", [], ["shapes-alignment"], 10),
    "d3po-alignment-large": ("d3po", [*D3PO_LARGE_ROUNDS], ["shapes-alignment"], 10),
    "d3po-compressibility": ("d3po", ["objective.options.labeller=jpeg-compressibility", *D3PO_LARGE_ROUNDS],
                             ["jpeg-compressibility", "shapes-alignment"], 10),
    "d3po-compressibility-wide": ("d3po", ["objective.options.labeller=jpeg-compressibility", *D3PO_WIDE_ROUNDS],
                                  ["jpeg-compressibility", "shapes-alignment"], 10),
    "ddpo-alignment": ("ddpo", ["objective.options.reward=shapes-alignment"], ["shapes-alignment"], 10),
    "ddpo-compressibility": ("ddpo", ["objective.options.reward=jpeg-compressibility", *LARGE_ROUNDS],
                             ["jpeg-compressibility", "shapes-alignment"], 10),
    "rlcm-compressibility": ("rlcm", [*LARGE_ROUNDS], ["jpeg-compressibility", "shapes-alignment"], 4),
    "rlcm-compressibility-wide": ("rlcm", [*RLCM_WIDE_ROUNDS], ["jpeg-compressibility", "shapes-alignment"], 4),
    "alignprop-colourfulness": ("alignprop", [], ["colourfulness", "shapes-alignment"], 10),
    "ddpo-colourfulness": ("ddpo", ["objective.options.reward=colourfulness"],
                           ["colourfulness", "shapes-alignment"], 10),
    "pso-heldout": ("pso", [], ["shapes-alignment"], 4),
    "seppo-heldout": ("seppo", [], ["shapes-alignment"], 10),
    "seppo-noflip": ("seppo", ["objective.options.flipper=false"], ["shapes-alignment"], 10),
    "seppo-initial": ("seppo", ["objective.options.ref_strategy=initial"], ["shapes-alignment"], 10),
    "texforce-alignment": ("texforce", [], ["shapes-alignment"], 10),
    "texforce-compressibility": ("texforce", ["objective.options.reward=jpeg-compressibility", *LARGE_ROUNDS],
                                 ["jpeg-compressibility", "shapes-alignment"], 10),
    "texforce-compressibility-wide": ("texforce",
                                      ["objective.options.reward=jpeg-compressibility", *TEXFORCE_WIDE_ROUNDS],
                                      ["jpeg-compressibility", "shapes-alignment"], 10),
}

def prompts(name: str) -> list[str]:
    """The prompts of ``examples/configs/alignment/prompts_<name>.txt``."""
    return [line for line in (CONFIGS / f"prompts_{name}.txt").read_text().splitlines() if line]


def measure(backbone, rewards: list[str], num_steps: int, samples: int, run: str) -> dict:
    """Per-sample scores of each reward on the run's evaluation prompts (fixed seed)."""
    import torch

    import difforge

    held = [p for p in evaluation_prompts(run) for _ in range(samples)]
    options = sampler_for(run)
    images = torch.cat([backbone.sample(held[i : i + 48], num_steps=num_steps,
                                        generator=torch.Generator().manual_seed(1000 + i), **options)
                        for i in range(0, len(held), 48)])
    return {name: difforge.get_registry("rewards").get(name)(images, held).tolist() for name in rewards}


def measure_base(rewards: list[str], num_steps: int, samples: int, run: str, work: Path) -> dict:
    """:func:`measure` of the base model, computed once per evaluation setting and kept in ``work``
    (every seed of a run, and runs measured alike, share it)."""
    import difforge

    key = "-".join([run.split("-")[0] if run.startswith("pso") else "heldout", *rewards, str(num_steps), str(samples),
                    *map(str, sampler_for(run).values())])
    cache = work / f"base-{key}.json"
    if not cache.exists():
        cache.write_text(json.dumps(measure(difforge.load("shapes-sd-tiny"), rewards, num_steps, samples, run)))
    return json.loads(cache.read_text())


def evaluation_prompts(run: str) -> list[str]:
    """The held-out two-shape prompts; for PSO, which trains on single shapes, the plain prompts
    of the held-out colour-shape combinations."""
    if run.startswith("pso"):
        from difforge_zoo.shapes import HELD_OUT_COMBINATIONS, article

        return [f"{article(c)} {c} {s}" for c, s in sorted(HELD_OUT_COMBINATIONS)]
    return prompts("heldout")


def sampler_for(run: str) -> dict:
    """RLCM and PSO are measured with the multistep consistency sampler they were trained for
    (PSO without guidance, as it trained); the others with DDIM and guidance 4."""
    if run.startswith("pso"):
        return {"sampler": "consistency", "guidance_scale": 1.0}
    return {"sampler": "consistency" if run.startswith("rlcm") else "ddim", "guidance_scale": 4.0}


#: samples of each pair prompt the preference pairs are chosen from (best against worst)
PAIR_SAMPLES = 4


def build_pairs(work: Path, captions: str = "perturbed", reward: str = "shapes-alignment") -> Path:
    """Preference pairs from the base model's own samples of ``prompts_pairs.txt`` ranked by
    ``reward`` (built once per ``--work`` folder), with DCPO's captions made by ``captions`` (see
    :data:`CAPTION_STRATEGIES`; the sampled pairs already carry "perturbed"). The images do not
    depend on the captions: every variant is the same pairs with other captions, and Diffusion-DPO
    reads the first and ignores them."""
    import difforge
    from difforge_align import dual_captions, preference_pairs, recaption_pairs

    out = work / ("pairs" if reward == "shapes-alignment" else f"pairs-{reward}")
    if not (out / "pairs.jsonl").exists():
        preference_pairs("shapes-sd-tiny", prompts("pairs"), reward, out,
                         samples_per_prompt=PAIR_SAMPLES, num_steps=25,
                         perturb=CAPTION_STRATEGIES["perturbed"][0],
                         word_groups=WORD_GROUPS)
    if captions == "perturbed":
        return out
    variant = out.with_name(f"{out.name}-{captions}")
    if not (variant / "pairs.jsonl").exists():
        perturb, captioned = CAPTION_STRATEGIES[captions]
        describe = difforge.get_registry("captioners").get("shapes-captioner") if captioned else None
        recaption_pairs(out, variant, dual_captions(perturb=perturb, word_groups=WORD_GROUPS, describe=describe))
    return variant


def worker(run: str, seed: int, scale: float, samples: int, work: Path) -> dict:
    """Train one run with one seed and measure it (in its own process)."""
    import difforge
    from difforge.config import load_config

    objective, overrides, rewards, num_steps = RUNS[run]
    config_path = CONFIGS / f"{objective}.yaml"
    steps = max(1, round(load_config(config_path, overrides).train.steps * scale))
    overrides = [*overrides, f"train.seed={seed}", f"train.steps={steps}", f"output.dir={work / run / str(seed)}",
                 "output.progress=false"]
    if objective in ("diffusion-dpo", "dcpo"):
        pairs_dir = build_pairs(work, DCPO_CAPTIONS.get(run, "perturbed"), PAIR_REWARDS.get(run, "shapes-alignment"))
        overrides.append(f"data.options.path={pairs_dir}")
    curve: list[dict] = []
    started = time.perf_counter()
    trainer = difforge.Trainer(load_config(config_path, overrides))
    def record(tr, step: int, logs: dict) -> None:
        if logs.get("reward") is not None:  # objectives without an on-policy reward log none
            latest = (getattr(tr.objective, "rounds", None) or [{}])[-1]
            # D3PO: the round's untied pairs
            pairs = {"labelled_pairs": latest["labelled_pairs"]} if "labelled_pairs" in latest else {}
            curve.append({"step": step, "samples": getattr(tr.objective, "samples_used", None), **pairs,
                          **{k: v for k, v in logs.items() if k != "lr"}})

    trainer.callbacks.append(record)
    result = trainer.fit()
    seconds = time.perf_counter() - started
    base = measure_base(rewards, num_steps, samples, run, work)
    tuned_model = difforge.load("shapes-sd-tiny", adapters=[(result.adapter_path, 1.0)])
    tuned = measure(tuned_model, rewards, num_steps, samples, run)
    pairs = None
    if objective in ("diffusion-dpo", "dcpo"):
        pairs = len((Path(trainer.config.data.options["path"]) / "pairs.jsonl").read_text().splitlines())
    def win_rate(reward: str) -> float:
        return statistics.mean(1.0 if t > b else 0.5 if t == b else 0.0
                               for t, b in zip(tuned[reward], base[reward], strict=True))
    return {"run": run, "objective": objective, "seed": seed, "scale": scale, "steps": result.steps,
            "seconds": round(seconds, 1), "generated_samples": getattr(trainer.objective, "samples_used", None),
            "preference_pairs": pairs, "before": {r: statistics.mean(v) for r, v in base.items()},
            "after": {r: statistics.mean(v) for r, v in tuned.items()},
            "win_rate_alignment": win_rate(rewards[-1] if "shapes-alignment" in rewards else rewards[0]),
            "win_rate": {reward: win_rate(reward) for reward in rewards}, "curve": curve}


def summarise(rows: list[dict]) -> dict:
    """Mean ± std over seeds per run and reward."""
    out: dict = {}
    for run in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == run]
        entry = {"seeds": len(mine), "steps": mine[0]["steps"], "scale": mine[0].get("scale"),
                 "seconds": statistics.mean(r["seconds"] for r in mine),
                 "generated_samples": mine[0]["generated_samples"], "preference_pairs": mine[0]["preference_pairs"],
                 "win_rate_alignment": mean_std([r["win_rate_alignment"] for r in mine]), "rewards": {}}
        for reward in mine[0]["before"]:
            before = [r["before"][reward] for r in mine]
            after = [r["after"][reward] for r in mine]
            gain = [a - b for a, b in zip(after, before, strict=True)]
            entry["rewards"][reward] = {"before": statistics.mean(before), "after": mean_std(after),
                                        "gain": mean_std(gain)}
            if all("win_rate" in r for r in mine):  # rows measured before the per-reward win rate lack it
                entry["rewards"][reward]["win_rate"] = mean_std([r["win_rate"][reward] for r in mine])
        out[run] = entry
    return out


def print_tables(results: dict) -> None:
    """Markdown tables of a results dict."""
    summary = results["summary"]
    print("\n### Held-out prompts: reward before vs after "
          f"(mean ± std over seeds, {results['samples']} samples per prompt)\n")
    print("| run | reward | before | after | gain | steps | generated samples / pairs | s per run |")
    print("|---|---|---|---|---|---|---|---|")
    for run, e in summary.items():
        used = e["preference_pairs"] and f"{e['preference_pairs']} pairs" or f"{e['generated_samples']}"
        for reward, r in e["rewards"].items():
            print(f"| {run} | {reward} | {r['before']:.3f} | {r['after'][0]:.3f} ± {r['after'][1]:.3f} | "
                  f"{r['gain'][0]:+.3f} ± {r['gain'][1]:.3f} | {e['steps']} | {used} | {e['seconds']:.0f} |")
    dpo = {k: v for k, v in summary.items() if k.startswith(("dpo", "dcpo", "d3po"))}
    if dpo:
        print("\n### DPO family: win rate of the tuned model over the base (held-out prompts, scorer)\n")
        print("| run | win rate |")
        print("|---|---|")
        for run, e in dpo.items():
            print(f"| {run} | {e['win_rate_alignment'][0]:.3f} ± {e['win_rate_alignment'][1]:.3f} |")
    win_rates = {(run, reward): r["win_rate"] for run, e in summary.items() for reward, r in e["rewards"].items()
                 if "win_rate" in r}
    if win_rates:
        print("\n### Win rate of the tuned model over the base per reward (the same prompt and sample seed; "
              "ties count half)\n")
        print("| run | reward | win rate |")
        print("|---|---|---|")
        for (run, reward), (mean, std) in win_rates.items():
            print(f"| {run} | {reward} | {mean:.3f} ± {std:.3f} |")
    compared = ("alignprop-colourfulness", "ddpo-colourfulness")
    curves = {r["run"]: r["curve"] for r in results["rows"]
              if r["run"] in compared and r["seed"] == results["rows"][0]["seed"]}
    if len(curves) == 2:
        print("\n### Colourfulness reached per generated sample (training batches, seed "
              f"{results['rows'][0]['seed']})\n")
        print("| generated samples | alignprop | ddpo |")
        print("|---|---|---|")
        for budget in (64, 128, 256, 512, 1024):
            cells = []
            for run in ("alignprop-colourfulness", "ddpo-colourfulness"):
                used = [c for c in curves[run] if c["samples"] is not None]
                seen = [c["reward"] for c in used if c["samples"] <= budget]
                reached = used and used[-1]["samples"] >= budget
                cells.append(f"{statistics.mean(seen[-3:]):.3f}" if seen and reached else "–")
            print(f"| {budget} | {cells[0]} | {cells[1]} |")


def main() -> None:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every config's train.steps")
    parser.add_argument("--samples", type=int, default=4, help="samples per held-out prompt")
    parser.add_argument("--out", default=str(HERE / "results" / "alignment.json"))
    parser.add_argument("--merge", action="store_true",
                        help="keep the --out file's rows of the runs not given in --runs (same model only)")
    parser.add_argument("--tables", action="store_true",
                        help="print the tables of the --out file (summaries recomputed from its rows); run nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", metavar="DIR",
                        help="keep the sampled preference pairs and the base model's scores here, for later runs "
                             "to reuse (default: a temporary folder)")
    args = parser.parse_args()
    if args.worker:
        emit(worker(args.worker, args.seed, args.scale, args.samples, Path(args.work)))
        return
    if args.tables:
        if not Path(args.out).is_file():
            raise SystemExit(f"--tables: {args.out} does not exist; run the benchmark first or pass --out")
        stored = json.loads(Path(args.out).read_text())
        print_tables(stored | {"summary": summarise(stored["rows"])})
        return
    rows = kept_rows(Path(args.out), args.runs, args.samples) if args.merge else []
    with contextlib.nullcontext(args.work) if args.work else tempfile.TemporaryDirectory() as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for run in args.runs:
            for seed in args.seeds:
                r = run_worker(__file__, ["--worker", run, "--seed", str(seed), "--scale", str(args.scale),
                                          "--samples", str(args.samples), "--work", tmp],
                               label=f"{run} seed {seed}", cwd=ROOT)
                rows.append(r)
                print(f"{run} seed {seed}: before {r['before']} after {r['after']} ({r['seconds']} s)", flush=True)
                results = {"samples": args.samples, "rows": rows, "summary": summarise(rows)}
                write_results(results, args.out, model="shapes-sd-tiny")  # after every run: nothing finished is lost
    print_tables(results)


def kept_rows(out: Path, runs: list[str], samples: int) -> list[dict]:
    """The rows of an earlier results file that ``--merge`` keeps: those of the runs not rerun,
    when they were measured on the same model with the same number of samples."""
    if not out.exists():
        return []
    old = json.loads(out.read_text())
    if old.get("model") != model_fingerprint("shapes-sd-tiny") or old.get("samples") != samples:
        raise SystemExit(f"--merge: {out} was measured on another model or with another --samples; "
                         "rerun every run instead")
    return [r for r in old["rows"] if r["run"] not in runs]

if __name__ == "__main__":
    main()
