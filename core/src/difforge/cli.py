"""The ``difforge`` command line. Each command is one call into the Python API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import __version__
from .errors import DifforgeError, UsageError

MODEL_HELP = "local diffusers directory, .safetensors file, or a plugin-resolved name"

@dataclass(frozen=True)
class Command:
    """A sub-command: ``configure(parser)`` adds its arguments, ``run(args)`` returns an exit code.

    ``configure`` and ``run`` may be given as ``"module:function"`` strings: the module is
    imported only when the command is chosen, so ``difforge --help`` stays fast however heavy
    a plugin's command is. Plugins contribute commands through ``difforge_register_commands``.
    """

    help: str
    configure: Callable[[argparse.ArgumentParser], None] | str
    run: Callable[[argparse.Namespace], int | None] | str

    def resolve(self, which: str) -> Callable:
        """``configure`` or ``run`` as a function (importing its module if it is a string)."""
        target = getattr(self, which)
        if callable(target):
            return target
        from .registry import lazy

        return lazy(target).load()


def _configure_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML run config (e.g. packages/zoo/src/difforge_zoo/configs/quickstart.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=1e-4 (repeatable)")
    p.add_argument("--resume", default=None, help="'auto' or a checkpoint directory to resume from")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in output.dir (deletes its checkpoints and outputs)")


def _run_train(args: argparse.Namespace) -> int:
    from .api import train

    overrides = list(args.overrides)
    if args.resume:
        overrides.append(f"train.resume={args.resume}")
    if args.overwrite:
        overrides.append("output.overwrite=true")
    result = train(args.config, overrides=overrides)
    where = result.adapter_path or result.model_path
    final = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
    print(f"trained {result.steps} steps in {result.seconds:.1f}s (final loss {final}); saved to {where}")
    return 0


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _finite_float(value: str) -> float:
    import math

    number = float(value)
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {value}")
    return number


def _configure_sample(p: argparse.ArgumentParser) -> None:
    model_arguments(p)
    p.add_argument("--prompt", action="append", default=[], help="prompt (repeatable; one sample each)")
    p.add_argument("--num-samples", type=_positive_int, default=4, help="samples to draw for unconditional models")
    p.add_argument("--steps", type=_positive_int, default=25, help="sampling steps")
    p.add_argument("--sampler", default=None,
                   help="registered sampler: ddpm, ddim, euler, flow_euler, ... (default: ddim; with --steer, the "
                        "steering method's proposal sampler)")
    p.add_argument("--sampler-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a sampler keyword argument, e.g. eta=0.5 for ddim or dc_ratios=FILE for dc_solver "
                        "(repeatable)")
    p.add_argument("--guidance", type=_finite_float, default=1.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default="samples.png", help="output PNG grid")
    p.add_argument("--metric", action="append", default=[], metavar="NAME",
                   help="registered metric of the samples to print as JSON (repeatable), e.g. pixel-statistics")
    p.add_argument("--renderer", default="auto",
                   help="how the grid draws samples: auto (images, video frames) or a plugin's renderer")
    steering = p.add_argument_group("inference-time steering (needs a steering plugin, e.g. difforge-steer)")
    steering.add_argument("--steer", default=None, metavar="METHOD",
                          help="registered steering method, e.g. fk (Feynman-Kac particles), svdd, best-of-n")
    steering.add_argument("--reward", default=None, metavar="NAME",
                          help="registered reward to steer toward, e.g. shapes-alignment, jpeg-compressibility")
    steering.add_argument("--particles", type=_positive_int, default=4,
                          help="candidates per output sample (FK particles, SVDD candidates, best-of-N's N)")
    steering.add_argument("--steer-option", action="append", default=[], metavar="KEY=VALUE",
                          help="a steering method option, e.g. potential=max, lmbda=10, resample_every=5 (repeatable)")


def _run_sample(args: argparse.Namespace) -> int:
    from .api import sample

    adapters = [adapter_argument(item) for item in args.adapter]
    path = sample(
        args.model,
        prompts=args.prompt or None,
        adapters=adapters,
        num_samples=args.num_samples,
        num_steps=args.steps,
        sampler=args.sampler,
        guidance_scale=args.guidance,
        seed=args.seed,
        out=args.out,
        metrics=args.metric,
        renderer=args.renderer,
        steering=args.steer,
        reward=args.reward,
        particles=args.particles,
        steer_options=dict(option_argument(item, "--steer-option") for item in args.steer_option),
        sampler_options=dict(option_argument(item, "--sampler-option") for item in args.sampler_option),
    )
    print(f"wrote {path}")
    return 0


def _configure_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a training run's output directory (output.dir)")


def _run_report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(f"wrote {write_report(args.run_dir)}")
    return 0


def option_argument(item: str, flag: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value), the value read as YAML (``10`` an int, ``max`` a string); ``flag``
    names the option in the error of a malformed item."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
    return key.strip(), yaml.safe_load(value)


def model_arguments(parser: argparse.ArgumentParser, adapters: bool = True) -> None:
    """Add ``--model`` (required) and, with ``adapters``, the repeatable ``--adapter PATH[:WEIGHT]``:
    the arguments of every command that loads a model (``difforge sample`` and plugin commands);
    :func:`load_model_arguments` loads what they name."""
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    if adapters:
        parser.add_argument("--adapter", action="append", default=[], metavar="PATH[:WEIGHT]",
                            help="adapter directory or file to stack on the model, optionally with a weight "
                                 "(repeatable)")


def load_model_arguments(args: argparse.Namespace):
    """The :class:`~difforge.backbone.Backbone` named by :func:`model_arguments`' ``--model``, with
    its ``--adapter`` items stacked, in eval mode."""
    from .api import load

    return load(args.model, [adapter_argument(item) for item in getattr(args, "adapter", [])]).eval()


def adapter_argument(item: str) -> tuple[str, float]:
    """``PATH`` or ``PATH:WEIGHT`` -> (path, weight): an ``--adapter`` argument (of ``difforge sample`` and
    of plugin commands that load a model)."""
    path, sep, weight = item.rpartition(":")
    if sep:
        try:
            return path, float(weight)
        except ValueError:
            pass
    return item, 1.0


def _configure_plugins(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _run_plugins(args: argparse.Namespace) -> int:
    from .plugins import plugin_report

    print(plugin_report(as_json=args.json))
    return 0


BUILTIN_COMMANDS: dict[str, Command] = {
    "train": Command("train a model or adapter from a YAML config", _configure_train, _run_train),
    "sample": Command("sample a model (optionally with adapters) into a PNG grid", _configure_sample, _run_sample),
    "plugins": Command("list plugins: version, status, load time, what each registered", _configure_plugins,
                       _run_plugins),
    "report": Command("write report.html for a run directory (training writes it at the end)", _configure_report,
                      _run_report),
}


def build_parser(commands: dict[str, Command], configure: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser with built-in and plugin commands; only the commands named in
    ``configure`` (default: all) get their arguments, which may import their modules."""
    parser = argparse.ArgumentParser(
        prog="difforge",
        description="Fine-tune, align and steer diffusion models.",
    )
    parser.add_argument("--version", action="version", version=f"difforge {__version__}")
    parser.add_argument("--strict-plugins", action="store_true",
                        help="fail if any plugin fails to load or is incompatible (for CI)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in commands.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if configure is None or name in configure:
            command.resolve("configure")(p)
        p.set_defaults(_command=command)
    return parser


def _chosen_command(argv: Sequence[str], commands: dict[str, Command]) -> str | None:
    """The sub-command ``argv`` asks for: its first argument that is not an option."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in commands else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``difforge`` executable."""
    argv = list(sys.argv[1:] if argv is None else argv)
    strict = "--strict-plugins" in argv
    commands = dict(BUILTIN_COMMANDS)
    try:
        if "--version" not in argv:
            from .plugins import get_plugin_manager

            pm = get_plugin_manager(strict=strict or None)
            for name in pm.registries["commands"].names():
                if name in commands:
                    owner = pm.registries["commands"].owner(name)
                    raise DifforgeError(f"command {name!r} from plugin {owner!r} clashes with a built-in command")
                commands[name] = pm.registries["commands"].get(name)
        chosen = _chosen_command(argv, commands)
        parser = build_parser(commands, configure=[chosen] if chosen else [])
        args = parser.parse_args(argv)
        if not getattr(args, "_command", None):
            parser.print_help()
            return 2
        return int(args._command.resolve("run")(args) or 0)
    except DifforgeError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:  # several config problems: one line each
            print(f"difforge: error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("difforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
