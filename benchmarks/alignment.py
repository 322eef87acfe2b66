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
| textcraftor-colourfulness | alignprop on a LoRA of the text encoder (``textcraftor.yaml``), also measured with the LoRA at weights 0.25 / 0.5 / 0.75 (the interpolation slider) | colourfulness | colourfulness, alignment |
| sft-dpo / sft-dpo-colourfulness | denoising (``sft-dpo.yaml``) | the supervised baseline of the DPO-family rows: plain fine-tuning on the chosen images of the same pairs (ranked by alignment / colourfulness), same LoRA, steps, learning rate | as the rows it is the baseline of |
| sft-pso / sft-seppo | denoising (``sft-pso.yaml`` / ``sft-seppo.yaml``) | the supervised baselines of PSO and SePPO: plain fine-tuning on the same images | as PSO / SePPO |
| rlcm-compressibility-lcm / pso-heldout-lcm / sft-pso-lcm | rlcm (``LARGE_ROUNDS``) / pso (guidance 4 as input) / denoising | as rlcm-compressibility / pso-heldout / sft-pso, but on shapes-lcm-tiny, the consistency-distilled model RLCM and PSO are meant for | as those rows, sampled at guidance 4 |

Every on-policy run (DDPO, RLCM, D3PO, TexForce, AlignProp) is compared with best-of-N sampling
from the base model at its sampling cost: N = the samples it generated in training per evaluation
sample, the best of N picked by the reward it trained on (``--best-of-n`` draws the pools, see
:data:`POOLS`). The results file's ``baselines`` pairs every run with its baseline by seed, and
records the share of its evaluation prompts that are training captions.

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
    python benchmarks/alignment.py --runs sft-pso sft-seppo --scale 0.5 --merge   # PSO's / SePPO's baselines
    python benchmarks/alignment.py --best-of-n                # the on-policy runs' best-of-N pools (about 30 min)
    python benchmarks/alignment.py --runs rlcm-compressibility-lcm pso-heldout-lcm sft-pso-lcm --merge
    python benchmarks/alignment.py --best-of-n lcm-consistency-4   # RLCM-on-LCM's pool
"""  # noqa: E501 (the runs table)

from __future__ import annotations

import argparse
import contextlib
import functools
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
from worker import LOSS_HEAD, emit, mean_std, model_fingerprint, run_worker, stored_results, write_results  # noqa: E402

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
PAIR_REWARDS = {"dpo-colourfulness": "colourfulness", "dcpo-colourfulness": "colourfulness",
                "sft-dpo-colourfulness": "colourfulness"}

#: the runs whose names end in "-lcm" start from the consistency-distilled shapes-lcm-tiny, the base
#: RLCM and PSO are meant for (the others from shapes-sd-tiny, an ordinary epsilon UNet)
LCM_MODEL = "model.pretrained=shapes-lcm-tiny"

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
    "textcraftor-colourfulness": ("textcraftor", [], ["colourfulness", "shapes-alignment"], 10),
    "sft-dpo": ("sft-dpo", [], ["shapes-alignment"], 25),
    "sft-dpo-colourfulness": ("sft-dpo", [], ["colourfulness", "shapes-alignment"], 25),
    "sft-pso": ("sft-pso", [], ["shapes-alignment"], 4),
    "sft-seppo": ("sft-seppo", [], ["shapes-alignment"], 10),
    "rlcm-compressibility-lcm": ("rlcm", [LCM_MODEL, *LARGE_ROUNDS], ["jpeg-compressibility", "shapes-alignment"], 4),
    "pso-heldout-lcm": ("pso", [LCM_MODEL, "objective.options.guidance_scale=4.0"], ["shapes-alignment"], 4),
    "sft-pso-lcm": ("sft-pso", [LCM_MODEL], ["shapes-alignment"], 4),
}

#: the supervised baseline of every run that learns from images: plain denoising fine-tuning with
#: the same adapter, images (the chosen ones of the pairs, or the winners), steps, learning rate
#: and evaluation (run the baseline at the method's ``--scale``)
SUPERVISED_BASELINES = {
    **dict.fromkeys(["dpo", "dcpo", "dcpo-weak", "dcpo-captioned", "dcpo-hybrid"], "sft-dpo"),
    **dict.fromkeys(["dpo-colourfulness", "dcpo-colourfulness"], "sft-dpo-colourfulness"),
    "pso-heldout": "sft-pso",
    "pso-heldout-lcm": "sft-pso-lcm",
    **dict.fromkeys(["seppo-heldout", "seppo-noflip", "seppo-initial"], "sft-seppo"),
}

def is_lcm(run: str) -> bool:
    """Whether ``run`` starts from shapes-lcm-tiny (see :data:`LCM_MODEL`)."""
    return run.endswith("-lcm")


def base_model(run: str) -> str:
    """The zoo model ``run`` fine-tunes and is measured against."""
    return "shapes-lcm-tiny" if is_lcm(run) else "shapes-sd-tiny"


#: best-of-N pools, the baseline of the on-policy runs (which learn from their own samples and a
#: reward): per seed, ``candidates`` base-model samples of every evaluation sample in a run's
#: sampling setting, each scored by ``rewards``; candidate 0 is the base sample itself. A run's
#: baseline keeps, per evaluation sample, the best of N candidates by the reward the run trained
#: on, N = the samples the run generated in training / the evaluation samples (the same sampling
#: cost, spent at test time; at least 1)
POOLS = {  # pool -> (a run measured in its setting, sampling steps, rewards, candidates)
    "ddim-10": ("ddpo-alignment", 10, ["shapes-alignment", "jpeg-compressibility", "colourfulness"], 27),
    "consistency-4": ("rlcm-compressibility", 4, ["jpeg-compressibility", "shapes-alignment"], 40),
    "lcm-consistency-4": ("rlcm-compressibility-lcm", 4, ["jpeg-compressibility", "shapes-alignment"], 14),
}

#: on-policy runs -> the pool their best-of-N baseline draws from
ON_POLICY = {run: ("lcm-consistency-4" if is_lcm(run) else "consistency-4") if run.startswith("rlcm") else "ddim-10"
             for run in RUNS if run.startswith(("ddpo", "d3po", "rlcm", "texforce", "alignprop", "textcraftor"))}

#: runs also measured with their adapter scaled by each of these weights: TextCraftor's
#: interpolation between the original (0) and the tuned (1) text encoder
SLIDERS = {"textcraftor-colourfulness": [0.25, 0.5, 0.75]}

def prompts(name: str) -> list[str]:
    """The prompts of ``examples/configs/alignment/prompts_<name>.txt``."""
    return [line for line in (CONFIGS / f"prompts_{name}.txt").read_text().splitlines() if line]


def measure(backbone, rewards: list[str], num_steps: int, samples: int, run: str, seed_offset: int = 0) -> dict:
    """Per-sample scores of each reward on the run's evaluation prompts (fixed seed; another
    ``seed_offset`` draws other samples of the same prompts)."""
    import torch

    import difforge

    held = [p for p in evaluation_prompts(run) for _ in range(samples)]
    options = sampler_for(run)
    images = torch.cat([backbone.sample(held[i : i + 48], num_steps=num_steps,
                                        generator=torch.Generator().manual_seed(1000 + i + seed_offset), **options)
                        for i in range(0, len(held), 48)])
    return {name: difforge.get_registry("rewards").get(name)(images, held).tolist() for name in rewards}


def measure_base(rewards: list[str], num_steps: int, samples: int, run: str, work: Path) -> dict:
    """:func:`measure` of the base model, computed once per evaluation setting and kept in ``work``
    (every seed of a run, and runs measured alike, share it)."""
    import difforge

    key = "-".join([base_model(run), "pso" if is_pso(run) else "heldout", *rewards, str(num_steps), str(samples),
                    *map(str, sampler_for(run).values())])
    cache = work / f"base-{key}.json"
    if not cache.exists():
        cache.write_text(json.dumps(measure(difforge.load(base_model(run)), rewards, num_steps, samples, run)))
    return json.loads(cache.read_text())


def evaluation_prompts(run: str) -> list[str]:
    """The held-out two-shape prompts; for PSO, which trains on single shapes, the plain prompts
    of the held-out colour-shape combinations (for its baseline too)."""
    if is_pso(run):
        from difforge_zoo.shapes import HELD_OUT_COMBINATIONS, article

        return [f"{article(c)} {c} {s}" for c, s in sorted(HELD_OUT_COMBINATIONS)]
    return prompts("heldout")


def is_pso(run: str) -> bool:
    """Whether ``run`` is measured as PSO is (PSO itself, or its supervised baseline)."""
    return run.startswith(("pso", "sft-pso"))


def training_captions(run: str) -> set[str]:
    """The captions ``run`` trains on: the pair prompts for the runs trained on preference pairs
    (and their baseline), else those of its config's dataset (prompts, or rendered scenes)."""
    import difforge
    from difforge.config import load_config

    objective, overrides, _, _ = RUNS[run]
    if objective in ("diffusion-dpo", "dcpo", "sft-dpo"):
        return set(prompts("pairs"))
    data = load_config(CONFIGS / f"{objective}.yaml", overrides).data
    dataset = difforge.get_registry("datasets").get(data.dataset)(**data.options)
    return {dataset[i]["caption"] for i in range(len(dataset))}


@functools.cache
def evaluation_overlap(run: str) -> float:
    """The share of ``run``'s evaluation prompts that are also training captions (0: measured on
    unseen prompts; 1: the task is to learn the training concepts)."""
    seen = training_captions(run)
    return statistics.mean(p in seen for p in evaluation_prompts(run))


def sampler_for(run: str) -> dict:
    """RLCM and PSO are measured with the multistep consistency sampler they were trained for
    (PSO and its baseline on shapes-sd-tiny without guidance, as PSO trained there; on
    shapes-lcm-tiny at the guidance scale 4 it takes as input); the others with DDIM and guidance 4."""
    if is_pso(run) and not is_lcm(run):
        return {"sampler": "consistency", "guidance_scale": 1.0}
    return {"sampler": "consistency" if run.startswith("rlcm") or is_pso(run) else "ddim", "guidance_scale": 4.0}


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
    if objective == "sft-dpo":
        from difforge_align import chosen_images

        pairs_dir = build_pairs(work, "perturbed", PAIR_REWARDS.get(run, "shapes-alignment"))
        chosen = pairs_dir.with_name(f"{pairs_dir.name}-chosen")
        if not (chosen / "metadata.jsonl").exists():
            chosen_images(pairs_dir, chosen)
        overrides.append(f"data.options.path={chosen}")
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
    tuned_model = difforge.load(base_model(run), adapters=[(result.adapter_path, 1.0)])
    tuned = measure(tuned_model, rewards, num_steps, samples, run)
    slider = {}
    for weight in SLIDERS.get(run, []):
        scaled = measure(difforge.load(base_model(run), adapters=[(result.adapter_path, weight)]), rewards,
                         num_steps, samples, run)
        slider[str(weight)] = {r: statistics.mean(v) for r, v in scaled.items()}
    pairs = None
    if objective in ("diffusion-dpo", "dcpo"):
        pairs = len((Path(trainer.config.data.options["path"]) / "pairs.jsonl").read_text().splitlines())
    if objective == "sft-dpo":
        pairs = len((Path(trainer.config.data.options["path"]) / "metadata.jsonl").read_text().splitlines())
    def win_rate(reward: str) -> float:
        return statistics.mean(1.0 if t > b else 0.5 if t == b else 0.0
                               for t, b in zip(tuned[reward], base[reward], strict=True))
    return {"run": run, "model": base_model(run), "objective": objective, "seed": seed, "scale": scale,
            "steps": result.steps,
            "seconds": round(seconds, 1), "generated_samples": getattr(trainer.objective, "samples_used", None),
            "preference_pairs": pairs, "before": {r: statistics.mean(v) for r, v in base.items()},
            "after": {r: statistics.mean(v) for r, v in tuned.items()},
            "win_rate_alignment": win_rate(rewards[-1] if "shapes-alignment" in rewards else rewards[0]),
            "win_rate": {reward: win_rate(reward) for reward in rewards}, "curve": curve,
            "loss_head": result.losses[:LOSS_HEAD],
            **({"slider": slider} if slider else {})}


def candidate_offset(candidate: int, seed: int, candidates: int) -> int:
    """The :func:`measure` seed offset of a pool's candidate: candidate 0 is the base sample
    itself (offset 0); the others differ between candidates and seeds."""
    return 0 if candidate == 0 else 7919 * (candidate + candidates * seed)


def pool_worker(pool: str, seed: int, samples: int) -> dict:
    """Draw one seed of a best-of-N pool from the base model (in its own process) and return,
    for every reward that selects and every N up to the pool's size, the mean of each reward over
    the evaluation samples of the best of the first N candidates (ties keep the earlier one)."""
    import torch

    import difforge

    like, num_steps, rewards, candidates = POOLS[pool]
    backbone = difforge.load(base_model(like))
    started = time.perf_counter()
    scores = [measure(backbone, rewards, num_steps, samples, like, candidate_offset(k, seed, candidates))
              for k in range(candidates)]
    table = {r: torch.tensor([c[r] for c in scores], dtype=torch.float64) for r in rewards}  # (candidates, samples)
    columns = torch.arange(table[rewards[0]].shape[1])
    best_of = {by: {r: [table[r][table[by][:n].argmax(0), columns].mean().item() for n in range(1, candidates + 1)]
                    for r in rewards} for by in rewards}
    return {"pool": pool, "seed": seed, "candidates": candidates, "num_steps": num_steps, **sampler_for(like),
            "seconds": round(time.perf_counter() - started, 1), "best_of": best_of}


def best_of_n(generated_samples: int, samples: int) -> int:
    """N of a run's best-of-N baseline: its generated training samples per evaluation sample."""
    return max(1, round(generated_samples / (len(prompts("heldout")) * samples)))


def compare_baselines(rows: list[dict], pools: list[dict], samples: int) -> dict:
    """Each run against the simplest alternative, paired by seed: its supervised baseline
    (:data:`SUPERVISED_BASELINES`) or best-of-N sampling from the base at the same sampling cost
    (:data:`ON_POLICY`); per measured reward the method's and the baseline's score and their
    difference (mean ± std over the seeds both have), with the share of evaluation prompts seen in
    training."""
    out: dict = {}
    for run in [run for run in RUNS if any(r["run"] == run for r in rows)]:
        mine = {r["seed"]: r for r in rows if r["run"] == run}
        if run in SUPERVISED_BASELINES:
            name = SUPERVISED_BASELINES[run]
            theirs = {r["seed"]: r["after"] for r in rows if r["run"] == name}
            entry = {"baseline": name}
        elif run in ON_POLICY:
            n = best_of_n(next(iter(mine.values()))["generated_samples"], samples)
            trained = RUNS[run][2][0]
            theirs = {p["seed"]: {r: curve[n - 1] for r, curve in p["best_of"][trained].items()}
                      for p in pools if p["pool"] == ON_POLICY[run] and n <= p["candidates"]}
            entry = {"baseline": f"best-of-{n} ({ON_POLICY[run]}, by {trained})", "n": n}
        else:
            continue
        seeds = sorted(set(mine) & set(theirs))
        if not seeds:
            continue
        entry |= {"seeds": seeds, "eval_prompts_in_training": evaluation_overlap(run), "rewards": {}}
        for reward in mine[seeds[0]]["after"]:
            method = [mine[s]["after"][reward] for s in seeds]
            base = [theirs[s][reward] for s in seeds]
            entry["rewards"][reward] = {"method": mean_std(method), "baseline": mean_std(base),
                                        "difference": mean_std([m - b for m, b in zip(method, base, strict=True)])}
        out[run] = entry
    return out


def seed_differences(rows: list[dict], run: str, reward: str) -> list[float]:
    """``run``'s score on ``reward`` minus its supervised baseline's, per seed both have (in seed order)."""
    baseline = {r["seed"]: r["after"][reward] for r in rows if r["run"] == SUPERVISED_BASELINES[run]}
    return [r["after"][reward] - baseline[r["seed"]] for r in sorted(rows, key=lambda r: r["seed"])
            if r["run"] == run and r["seed"] in baseline]


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
        used = e["preference_pairs"] and f"{e['preference_pairs']} pairs" or f"{e['generated_samples'] or '–'}"
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
    if results.get("baselines"):
        print("\n### Against the simplest alternative (paired by seed; supervised: denoising fine-tuning on the "
              "same images, steps and evaluation; best-of-N: the base's samples at the run's sampling cost)\n")
        print(baseline_table(results["baselines"]))
    for run in SLIDERS:
        if any(r["run"] == run and "slider" in r for r in results["rows"]):
            print(f"\n### {run}: the adapter's weight as a slider between the original (0) and the tuned (1) "
                  "model (mean ± std over seeds)\n")
            print(slider_table(results["rows"], run))
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


def baseline_table(baselines: dict) -> str:
    """The markdown table of :func:`compare_baselines` (docs/alignment.md quotes it)."""
    lines = ["| run | reward | method | baseline | baseline's score | method − baseline | seeds "
             "| evaluation prompts seen in training |", "|---|---|---|---|---|---|---|---|"]
    for run, e in baselines.items():
        for reward, r in e["rewards"].items():
            lines.append(f"| {run} | {reward} | {r['method'][0]:.3f} ± {r['method'][1]:.3f} | {e['baseline']} | "
                         f"{r['baseline'][0]:.3f} ± {r['baseline'][1]:.3f} | "
                         f"{r['difference'][0]:+.3f} ± {r['difference'][1]:.3f} | {len(e['seeds'])} | "
                         f"{e['eval_prompts_in_training']:.0%} |")
    return "\n".join(lines)


def slider_table(rows: list[dict], run: str) -> str:
    """Each reward of ``run`` with its adapter at each weight of :data:`SLIDERS` (0: the base
    model, 1: the tuned one), mean ± std over its seeds (docs/alignment.md quotes it)."""
    mine = [r for r in rows if r["run"] == run and "slider" in r]
    rewards = list(mine[0]["after"])
    lines = ["| weight | " + " | ".join(rewards) + " |", "|---|" + "---|" * len(rewards)]
    for weight in [0.0, *SLIDERS[run], 1.0]:
        cells = []
        for reward in rewards:
            values = [r["before"][reward] if weight == 0 else r["after"][reward] if weight == 1
                      else r["slider"][str(weight)][reward] for r in mine]
            mean, std = mean_std(values)
            cells.append(f"{mean:.3f} ± {std:.3f}")
        lines.append(f"| {weight:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    parser.add_argument("--best-of-n", nargs="*", choices=list(POOLS), metavar="POOL",
                        help="draw the best-of-N pools (all without names: " + ", ".join(POOLS) + ") for --seeds "
                             "and store them in the --out file beside its runs; train nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--pool-worker", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", metavar="DIR",
                        help="keep the sampled preference pairs and the base model's scores here, for later runs "
                             "to reuse (default: a temporary folder)")
    args = parser.parse_args()
    if args.worker:
        emit(worker(args.worker, args.seed, args.scale, args.samples, Path(args.work)))
        return
    if args.pool_worker:
        emit(pool_worker(args.pool_worker, args.seed, args.samples))
        return
    if args.tables:
        stored = stored_results(args.out)
        print_tables(collect(stored["rows"], stored.get("pools", []), stored["samples"]))
        return
    if args.best_of_n is not None:
        rows, pools = kept_rows(Path(args.out), [], args.samples), kept_pools(Path(args.out))
        for pool in args.best_of_n or list(POOLS):
            for seed in args.seeds:
                p = run_worker(__file__, ["--pool-worker", pool, "--seed", str(seed), "--samples", str(args.samples)],
                               label=f"pool {pool} seed {seed}", cwd=ROOT)
                pools = [q for q in pools if (q["pool"], q["seed"]) != (pool, seed)] + [p]
                print(f"pool {pool} seed {seed}: {p['seconds']} s", flush=True)
                results = collect(rows, pools, args.samples)
                write_results(results, args.out, model="shapes-sd-tiny")
        print_tables(results)
        return
    rows = kept_rows(Path(args.out), args.runs, args.samples) if args.merge else []
    pools = kept_pools(Path(args.out)) if args.merge else []
    with contextlib.nullcontext(args.work) if args.work else tempfile.TemporaryDirectory() as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for run in args.runs:
            for seed in args.seeds:
                r = run_worker(__file__, ["--worker", run, "--seed", str(seed), "--scale", str(args.scale),
                                          "--samples", str(args.samples), "--work", tmp],
                               label=f"{run} seed {seed}", cwd=ROOT)
                rows.append(r)
                print(f"{run} seed {seed}: before {r['before']} after {r['after']} ({r['seconds']} s)", flush=True)
                results = collect(rows, pools, args.samples)
                write_results(results, args.out, model="shapes-sd-tiny")  # after every run: nothing finished is lost
    print_tables(results)


def collect(rows: list[dict], pools: list[dict], samples: int) -> dict:
    """The results file's content: the rows, the best-of-N pools, their summaries."""
    return {"samples": samples, "rows": rows, "pools": pools, "summary": summarise(rows),
            "baselines": compare_baselines(rows, pools, samples)}


def kept_pools(out: Path) -> list[dict]:
    """The best-of-N pools stored in an earlier results file (:func:`kept_rows` checks its model)."""
    return json.loads(out.read_text()).get("pools", []) if out.exists() else []


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
