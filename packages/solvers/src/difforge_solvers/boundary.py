"""Optimal boundary conditions for diffusion-ODE sampling (Ma et al. 2024, "Solving Diffusion ODEs
with Optimal Boundary Conditions for Better Image Super-Resolution").

A deterministic ODE sampler maps the initial noise ``x_T`` (the boundary condition) and the
condition ``y`` to one sample, ``x_0 = h(x_T, y)``, and its quality varies with ``x_T``. The
paper finds that an approximately optimal ``x_T`` is shared across conditions, and approximates
it by Monte-Carlo exploration: draw candidate noises, solve the ODE from each for every item of
a small reference set, keep the candidate whose results score best on average; then sample every
new condition from that one noise. The paper scores super-resolutions by LPIPS against their
high-resolution references; a condition without a unique target (a prompt) is scored here by a
registered reward (e.g. the shapes world's analytic scorer), which is the substitution this
implementation makes.

``sample_from_boundary`` is the sampler that starts from the stored noise (``--sampler obc
--sampler-option boundary=FILE``): it replaces the initial noise of every row by the boundary
condition and runs a deterministic base sampler (DDIM by default) from it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from difforge.plugin_api import SamplingSchedule, UsageError, atomic_save_safetensors

BOUNDARY_KEY = "boundary"


@dataclass
class BoundarySearch:
    """The chosen boundary condition (one sample's shape), every candidate's mean reward, the
    chosen index."""

    boundary: Tensor
    scores: list[float]
    chosen: int


def sample_from_boundary(denoise, noise: Tensor, schedule: SamplingSchedule, *, boundary: str | Tensor,
                         base: str = "ddim", generator: torch.Generator | None = None, callback=None,
                         **options) -> Tensor:
    """Solve the diffusion ODE from the optimised boundary condition (Ma et al. 2024) instead of
    ``noise``: every row starts from ``boundary`` (a tensor or a file of :func:`save_boundary`)."""
    from difforge.plugin_api import get_registry

    start = load_boundary(boundary) if not isinstance(boundary, Tensor) else boundary
    if tuple(start.shape) != tuple(noise.shape[1:]):
        raise UsageError(f"sampler 'obc': the boundary condition has shape {tuple(start.shape)}, the model samples "
                         f"{tuple(noise.shape[1:])}")
    if base in ("ddpm", "obc") or (base == "ddim" and options.get("eta", 0.0) != 0.0):
        raise UsageError(f"sampler 'obc': the base sampler must solve the ODE deterministically; {base!r} adds noise")
    sampler = get_registry("samplers").get(base)
    x_T = start.to(noise).unsqueeze(0).expand_as(noise).clone()
    return sampler(denoise, x_T, schedule, generator=generator, callback=callback, **options)


def explore_boundary(evaluate, shape: Sequence[int], *, candidates: int = 32,
                     generator: torch.Generator | None = None) -> BoundarySearch:
    """The paper's Monte-Carlo exploration: ``candidates`` noises of ``shape`` drawn from
    ``N(0, I)``, each scored by ``evaluate(noise) -> float`` (the mean quality of the reference
    set solved from it); the best-scoring one is chosen."""
    pool = torch.randn((candidates, *shape), generator=generator)
    scores = [float(evaluate(candidate)) for candidate in pool]
    chosen = int(torch.tensor(scores).argmax())
    return BoundarySearch(pool[chosen].clone(), scores, chosen)


@torch.no_grad()
def search_boundary(backbone, prompts: Sequence[str], reward, *, candidates: int = 32, num_steps: int = 10,
                    guidance_scale: float = 1.0, base: str = "ddim",
                    generator: torch.Generator | None = None) -> BoundarySearch:
    """:func:`explore_boundary` on reference prompts: each candidate is solved for every prompt
    with ``num_steps`` of ``base`` and scored by the mean ``reward`` of its samples."""

    def evaluate(candidate: Tensor) -> float:
        images = backbone.sample(list(prompts), num_steps=num_steps, guidance_scale=guidance_scale,
                                 sampler=sample_from_boundary, boundary=candidate, base=base)
        return float(reward(images, list(prompts)).float().mean())

    return explore_boundary(evaluate, tuple(backbone.sample_shape()), candidates=candidates, generator=generator)


def save_boundary(path: str | Path, search: BoundarySearch, **provenance) -> Path:
    """Write the boundary condition as safetensors, with the search's scores and ``provenance``
    (model, steps, guidance, reward, prompts) in the file's metadata."""
    metadata = {"scores": json.dumps(search.scores), "chosen": str(search.chosen),
                **{key: json.dumps(value) for key, value in provenance.items()}}
    return atomic_save_safetensors({BOUNDARY_KEY: search.boundary.contiguous()}, Path(path), metadata=metadata)


def load_boundary(path: str | Path) -> Tensor:
    """The boundary condition of a file written by :func:`save_boundary`; one line if it is not one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"sampler 'obc': boundary {path}: no such file (make one with python -m "
                         "difforge_solvers.boundary)")
    with safe_open(str(path), framework="pt") as handle:
        if BOUNDARY_KEY not in handle.keys():
            raise UsageError(f"sampler 'obc': {path} holds no {BOUNDARY_KEY!r} tensor")
        return handle.get_tensor(BOUNDARY_KEY)


def main(argv: list[str] | None = None) -> int:
    """``python -m difforge_solvers.boundary``: search a boundary condition and save it."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m difforge_solvers.boundary",
                                     description="Search the approximately optimal boundary condition (initial "
                                                 "noise) of a model's ODE sampling on reference prompts.")
    parser.add_argument("--model", required=True, help="model directory, zoo name (as difforge sample)")
    parser.add_argument("--prompts", required=True, help="text file of reference prompts, one per line")
    parser.add_argument("--limit", type=int, default=10, help="reference prompts used (default 10)")
    parser.add_argument("--reward", required=True, help="a registered reward scoring the samples")
    parser.add_argument("--candidates", type=int, default=32, help="candidate noises explored")
    parser.add_argument("--steps", type=int, default=10, help="sampling steps the boundary is searched for")
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale")
    parser.add_argument("--sampler", default="ddim", help="the deterministic base sampler")
    parser.add_argument("--seed", type=int, default=0, help="seed of the candidates")
    parser.add_argument("--out", required=True, help="boundary condition file (.safetensors) to write")
    args = parser.parse_args(argv)

    import difforge
    from difforge.plugin_api import RegistryError

    from .search import read_prompts

    try:
        prompts = read_prompts(args.prompts, args.limit)
        reward = difforge.get_registry("rewards").get(args.reward)
        backbone = difforge.load(args.model).eval()
        search = search_boundary(backbone, prompts, reward, candidates=args.candidates, num_steps=args.steps,
                                 guidance_scale=args.guidance, base=args.sampler,
                                 generator=torch.Generator().manual_seed(args.seed))
    except (UsageError, RegistryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    out = save_boundary(args.out, search, model=str(args.model), steps=args.steps, guidance=args.guidance,
                        reward=args.reward, prompts=prompts, sampler=args.sampler)
    print(json.dumps({"chosen": search.chosen, "best": max(search.scores),
                      "mean": sum(search.scores) / len(search.scores)}))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
