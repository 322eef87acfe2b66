"""The ``difforge audio-generate`` and ``difforge audio-preferences`` sub-commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .controls import CONTROL_NAMES
from .music import NUM_FRAMES


def control_names(text: str) -> list[str]:
    """``--controls``: a comma-separated subset of the control names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTROL_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown control(s) {', '.join(unknown) or '(none given)'}; "
                                         f"known: {', '.join(CONTROL_NAMES)}")
    return names


def adapter_argument(text: str) -> tuple[str, float]:
    """``--adapter NAME_OR_PATH[:WEIGHT]``."""
    name, sep, weight = text.rpartition(":")
    if not sep:
        return text, 1.0
    try:
        return name, float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the weight after ':' must be a number") from None


def frame_span(text: str) -> tuple[int, int]:
    """``--frames START:STOP``: a non-empty span of spectrogram frames."""
    try:
        start, stop = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not START:STOP (two integers)") from None
    if not 0 <= start < stop <= NUM_FRAMES:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= START < STOP <= {NUM_FRAMES}")
    return start, stop


def configure_generate(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difforge audio-generate``."""
    p.add_argument("--prompt", action="append", required=True, help="caption (repeatable; one clip each)")
    p.add_argument("--controls-from", default=None, metavar="WAV",
                   help="take melody / dynamics / rhythm from this .wav (8 kHz; trimmed or padded to 2.048 s)")
    p.add_argument("--controls", type=control_names, default=list(CONTROL_NAMES),
                   help=f"comma-separated subset of {', '.join(CONTROL_NAMES)} to apply (with --controls-from)")
    p.add_argument("--frames", type=frame_span, default=(0, NUM_FRAMES), metavar="START:STOP",
                   help="give the controls only in these spectrogram frames (0-64); the rest is left to the model")
    p.add_argument("--control-scale", type=float, default=None,
                   help="ControlNet conditioning scale "
                        "(default: the one chosen on validation clips, see the model card)")
    p.add_argument("--adapter", action="append", default=[], type=adapter_argument, metavar="NAME_OR_PATH[:WEIGHT]",
                   help="a LoRA for the base model (repeatable), e.g. music-sd-tiny-tango2 (Tango 2 DPO)")
    p.add_argument("--steps", type=int, default=50, help="sampling steps")
    p.add_argument("--sampler", default="ddpm", help="registered sampler (ddpm, ddim, ...)")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default="outputs/audio", help="output folder for .wav files and plots")


def run_generate(args: argparse.Namespace) -> int:
    """Generate clips, write them and print the control metrics when controls were given."""
    import torch

    from .codec import MelCodec
    from .controls import extract_controls
    from .data import read_wav, write_wav
    from .evaluation import Reference, control_metrics
    from .pipeline import MusicPipeline
    from .plots import plot_clip

    codec, out = MelCodec(), Path(args.out)
    controls = reference = None
    frames = args.frames
    if args.controls_from:
        spec = codec.encode(read_wav(Path(args.controls_from)))
        full = extract_controls(spec, codec)
        reference = Reference("", spec, full)
        controls = [full.only(args.controls).within(*frames) for _ in args.prompt]
    from .pipeline import DEFAULT_CONDITIONING_SCALE

    scale = DEFAULT_CONDITIONING_SCALE if args.control_scale is None else args.control_scale
    pipe = MusicPipeline.from_pretrained(controlnet="music-controlnet-tiny" if controls else None,
                                         adapters=args.adapter, conditioning_scale=scale)
    specs = pipe(args.prompt, controls, num_steps=args.steps, sampler=args.sampler, guidance_scale=args.guidance,
                 generator=torch.Generator().manual_seed(args.seed))
    for i, (prompt, spec) in enumerate(zip(args.prompt, specs, strict=True)):
        wav = write_wav(out / f"clip_{i:02d}.wav", codec.decode(spec, seed=i))
        png = plot_clip(out / f"clip_{i:02d}.png", spec, prompt, controls[i] if controls else None)
        line = f"{wav}  {png}"
        if reference is not None:
            metrics = control_metrics(spec, reference, frames)
            line += "  " + json.dumps({k: round(v, 3) for k, v in metrics.items()})
        print(line)
    return 0


def configure_preferences(p: argparse.ArgumentParser) -> None:
    """Arguments of ``difforge audio-preferences``."""
    p.add_argument("--model", default="music-sd-tiny", help="base model name or directory")
    p.add_argument("--prompts", required=True, help="text file, one caption per line")
    p.add_argument("--samples-per-prompt", type=int, default=2, help="clips generated from each prompt")
    p.add_argument("--perturbed-per-prompt", type=int, default=2, help="clips from event-perturbed prompts")
    p.add_argument("--min-margin", type=float, default=0.2, help="least score difference to keep a pair")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", required=True, help="output folder (pairs.jsonl, audio/, spectrograms/)")


def run_preferences(args: argparse.Namespace) -> int:
    """Build the pairs and say where they are."""
    import difforge
    from difforge.plugin_api import read_text

    from .models import load_base
    from .preferences import build_audio_preferences

    file = Path(args.prompts)
    if not file.is_file():
        raise difforge.DataError(f"--prompts: {file} does not exist")
    prompts = [line.strip() for line in read_text(file).splitlines() if line.strip()]
    if not prompts:
        raise difforge.DataError(f"--prompts: {file} holds no captions")
    path = build_audio_preferences(load_base(args.model), prompts, args.out, samples_per_prompt=args.samples_per_prompt,
                                   perturbed_per_prompt=args.perturbed_per_prompt, min_margin=args.min_margin,
                                   seed=args.seed)
    count = sum(1 for line in path.read_text().splitlines() if line.strip())
    print(f"{count} pairs from {len(prompts)} prompts in {path}")
    return 0
