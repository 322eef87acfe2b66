"""The bad-input corpus: every input surface of the CLI, damaged the ways users damage them.

Each case is written by code into a fresh folder (no committed binaries) and is one CLI call
that must fail with exit 1 (2 for argparse's own checks), one ``difforge: error:`` line naming
``names`` (the file, key or argument), and no change to the run directory or the output file.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file


@dataclass
class Inputs:
    """What the cases damage: a tiny SD pipeline, its images and a LoRA trained on them."""

    root: Path
    pipeline: Path
    images: Path
    lora: Path
    config: dict
    prior_run: Path  # a finished run directory that no failed call may change


@dataclass
class Case:
    """One bad input: ``make(inputs, folder)`` writes it and returns the CLI arguments."""

    name: str
    command: str
    make: Callable[[Inputs, Path], list[str]]
    names: Callable[[Inputs, Path], str]
    exit_code: int = 1
    tags: set[str] = field(default_factory=set)


CASES: list[Case] = []


def case(name: str, command: str, names: Callable[[Inputs, Path], str], exit_code: int = 1):
    def register(make):
        CASES.append(Case(name, command, make, names, exit_code))
        return make
    return register


# ----------------------------------------------------------------------------- helpers
def lora_file(inputs: Inputs) -> Path:
    return next(inputs.lora.glob("*.safetensors"))


def sample_args(inputs: Inputs, folder: Path, model: Path | str | None = None, adapter: Path | None = None,
                prompt: bool = True) -> list[str]:
    args = ["sample", "--model", str(model or inputs.pipeline), "--steps", "1", "--out", str(folder / "out.png")]
    if prompt:
        args += ["--prompt", "a red circle"]
    if adapter is not None:
        args += ["--adapter", str(adapter)]
    return args


def train_args(inputs: Inputs, folder: Path, *, mutate: Callable[[dict], None] | None = None,
               raw: bytes | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    config = json.loads(json.dumps(inputs.config))
    config["output"]["dir"] = str(folder / "run")
    if mutate is not None:
        mutate(config)
    path = folder / "config.yaml"
    path.write_bytes(raw if raw is not None else yaml.safe_dump(config).encode())
    return ["train", str(path), *extra]


def images_copy(inputs: Inputs, folder: Path) -> Path:
    target = folder / "images"
    shutil.copytree(inputs.images, target)
    return target


def with_images(inputs: Inputs, folder: Path, damage: Callable[[Path], None]) -> list[str]:
    images = images_copy(inputs, folder)
    damage(images)
    return train_args(inputs, folder, mutate=lambda c: c["data"]["options"].update(path=str(images)))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def damaged_lora(inputs: Inputs, folder: Path, how: str) -> Path:
    data = lora_file(inputs).read_bytes()
    target = folder / "lora.safetensors"
    if how == "truncated":
        target.write_bytes(data[:-100])
    elif how == "lying-header":
        target.write_bytes(struct.pack("<Q", 10**12) + data[8:])
    elif how == "half":
        target.write_bytes(data[: len(data) // 2])
    elif how == "zip":
        with zipfile.ZipFile(target, "w") as z:
            z.writestr("archive/data.pkl", b"\x80\x04 not weights")
    elif how == "empty":
        target.write_bytes(b"")
    elif how == "not-lora":
        save_file({"some.weight": torch.randn(4, 4)}, str(target))
    elif how == "nan":
        state = load_file(str(lora_file(inputs)))
        first = sorted(state)[0]
        state[first] = torch.full_like(state[first], float("nan"))
        save_file(state, str(target), metadata={"format": "pt"})
    return target


def file_named(name: str) -> Callable[[Inputs, Path], str]:
    return lambda inputs, folder: str(folder / name)


# ----------------------------------------------------------------------------- adapters and models (sample)
for _how in ("truncated", "lying-header", "half", "zip", "empty", "not-lora", "nan"):
    case(f"adapter-{_how}", "sample", file_named("lora.safetensors"))(
        lambda inputs, folder, how=_how: sample_args(inputs, folder, adapter=damaged_lora(inputs, folder, how)))


@case("adapter-pickle", "sample", file_named("lora.pt"))
def _(inputs, folder):
    (folder / "lora.pt").write_bytes(b"\x80\x04\x95 a pickle")
    return sample_args(inputs, folder, adapter=folder / "lora.pt")


@case("adapter-missing", "sample", file_named("nowhere"))
def _(inputs, folder):
    return sample_args(inputs, folder, adapter=folder / "nowhere")


for _how in ("truncated", "zip", "not-lora"):
    case(f"model-file-{_how}", "sample", file_named("lora.safetensors"))(
        lambda inputs, folder, how=_how: sample_args(inputs, folder, model=damaged_lora(inputs, folder, how)))


@case("model-missing", "sample", file_named("no-model"))
def _(inputs, folder):
    return sample_args(inputs, folder, model=folder / "no-model")


@case("model-bin-only", "sample", file_named("pipeline"))
def _(inputs, folder):
    pipeline = shutil.copytree(inputs.pipeline, folder / "pipeline")
    for file in (pipeline / "unet").glob("*.safetensors"):
        file.rename(file.with_suffix(".bin"))
    return sample_args(inputs, folder, model=pipeline)


@case("model-truncated-weights", "sample", file_named("pipeline"))
def _(inputs, folder):
    pipeline = shutil.copytree(inputs.pipeline, folder / "pipeline")
    for file in (pipeline / "unet").glob("*.safetensors"):
        file.write_bytes(file.read_bytes()[:-100])
    return sample_args(inputs, folder, model=pipeline)


@case("model-nan-weights", "sample", file_named("pipeline"))
def _(inputs, folder):
    pipeline = shutil.copytree(inputs.pipeline, folder / "pipeline")
    file = next((pipeline / "unet").glob("*.safetensors"))
    state = load_file(str(file))
    name = sorted(state)[0]
    state[name] = torch.full_like(state[name], float("inf"))
    save_file(state, str(file), metadata={"format": "pt"})
    return sample_args(inputs, folder, model=pipeline)


@case("sample-no-prompt", "sample", lambda inputs, folder: "--prompt")
def _(inputs, folder):
    return sample_args(inputs, folder, prompt=False)


@case("sample-unknown-sampler", "sample", lambda inputs, folder: "'euler_typo'")
def _(inputs, folder):
    return [*sample_args(inputs, folder), "--sampler", "euler_typo"]


for _arg, _value in (("--steps", "0"), ("--steps", "-3"), ("--num-samples", "0"), ("--guidance", "nan")):
    case(f"sample-{_arg[2:]}-{_value}", "sample", lambda inputs, folder, arg=_arg: arg, exit_code=2)(
        lambda inputs, folder, arg=_arg, value=_value: [*sample_args(inputs, folder), arg, value])


# ----------------------------------------------------------------------------- configs (train)
def config_file(inputs, folder):
    return str(folder / "config.yaml")


@case("config-missing", "train", file_named("absent.yaml"))
def _(inputs, folder):
    return ["train", str(folder / "absent.yaml")]


@case("config-directory", "train", lambda inputs, folder: str(folder))
def _(inputs, folder):
    return ["train", str(folder)]


@case("config-not-utf8", "train", config_file)
def _(inputs, folder):
    return train_args(inputs, folder, raw="model: {pretrained: caf\xe9}\n".encode("latin-1"))


@case("config-invalid-yaml", "train", config_file)
def _(inputs, folder):
    return train_args(inputs, folder, raw=b"model: [unclosed\n")


@case("config-top-level-list", "train", config_file)
def _(inputs, folder):
    return train_args(inputs, folder, raw=b"- model\n- data\n")


@case("config-unknown-key", "train", lambda inputs, folder: "train.lerning_rate")
def _(inputs, folder):
    return train_args(inputs, folder, mutate=lambda c: c["train"].update(lerning_rate=1e-4))


@case("config-data-option-typo", "train", lambda inputs, folder: "data.options.resolutoin")
def _(inputs, folder):
    return train_args(inputs, folder, mutate=lambda c: c["data"]["options"].update(resolutoin=32))


@case("config-data-option-type", "train", lambda inputs, folder: "data.options.resolution")
def _(inputs, folder):
    return train_args(inputs, folder, mutate=lambda c: c["data"]["options"].update(resolution="big"))


@case("config-unknown-objective", "train", lambda inputs, folder: "objective.name")
def _(inputs, folder):
    return train_args(inputs, folder, mutate=lambda c: c.update(objective={"name": "denoisng"}))


@case("config-bad-override", "train", lambda inputs, folder: "--set")
def _(inputs, folder):
    return train_args(inputs, folder, extra=("--set", "train.lr"))


@case("config-target-modules-match-nothing", "train", lambda inputs, folder: "adapter.options")
def _(inputs, folder):
    return train_args(inputs, folder, mutate=lambda c: c["adapter"]["options"].update(target_modules=["nothing"]))


@case("config-output-dir-is-a-file", "train", file_named("a-file"))
def _(inputs, folder):
    (folder / "a-file").write_text("not a directory")
    return train_args(inputs, folder, mutate=lambda c: c["output"].update(dir=str(folder / "a-file")))


@case("run-dir-holds-another-run", "train", lambda inputs, folder: str(inputs.prior_run))
def _(inputs, folder):
    return train_args(inputs, folder, mutate=lambda c: c["output"].update(dir=str(inputs.prior_run)))


@case("resume-auto-other-config", "train", lambda inputs, folder: "train.seed")
def _(inputs, folder):
    return train_args(inputs, folder, extra=("--resume", "auto"), mutate=lambda c: (
        c["output"].update(dir=str(inputs.prior_run)), c["train"].update(seed=7)))


@case("resume-checkpoint-of-other-config", "train", lambda inputs, folder: "train.lr")
def _(inputs, folder):
    checkpoint = sorted(inputs.prior_run.glob("checkpoint-*"))[-1]
    return train_args(inputs, folder, extra=("--resume", str(checkpoint)),
                      mutate=lambda c: c["train"].update(lr=0.5))


@case("resume-damaged-checkpoint", "train", file_named("checkpoint-2"))
def _(inputs, folder):
    checkpoint = shutil.copytree(sorted(inputs.prior_run.glob("checkpoint-*"))[-1], folder / "checkpoint-2")
    weights = checkpoint / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    return train_args(inputs, folder, extra=("--resume", str(checkpoint)))


# ----------------------------------------------------------------------------- training data
def each_image(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    """Damage every image of the folder (whichever the first batch draws fails)."""
    return lambda folder: [damage(p) for p in sorted(folder.glob("*.png"))]


@case("images-garbage-png", "train", file_named("images/"))
def _(inputs, folder):
    return with_images(inputs, folder, each_image(lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n garbage")))


@case("images-truncated-png", "train", file_named("images/"))
def _(inputs, folder):
    return with_images(inputs, folder, each_image(lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])))


@case("images-decompression-bomb", "train", file_named("images/"))
def _(inputs, folder):
    bomb = png_bytes(Image.new("L", (13000, 13000)))
    return with_images(inputs, folder, each_image(lambda p: p.write_bytes(bomb)))


@case("images-none", "train", file_named("images"))
def _(inputs, folder):
    return with_images(inputs, folder, lambda d: [p.unlink() for p in d.glob("*.png")])


@case("metadata-bad-json", "train", file_named("images/metadata.jsonl"))
def _(inputs, folder):
    return with_images(inputs, folder, lambda d: (d / "metadata.jsonl").write_text('{"file_name": "0000.png",\n'))


@case("metadata-wrong-shape", "train", file_named("images/metadata.jsonl"))
def _(inputs, folder):
    return with_images(inputs, folder, lambda d: (d / "metadata.jsonl").write_text('["0000.png", "a caption"]\n'))


@case("metadata-not-utf8", "train", file_named("images/metadata.jsonl"))
def _(inputs, folder):
    return with_images(inputs, folder, lambda d: (d / "metadata.jsonl").write_bytes(
        '{"file_name": "0000.png", "text": "caf\xe9"}\n'.encode("latin-1")))


@case("caption-not-utf8", "train", file_named("images/"))
def _(inputs, folder):
    def damage(d):
        (d / "metadata.jsonl").unlink(missing_ok=True)
        each_image(lambda p: p.with_suffix(".txt").write_bytes("caf\xe9".encode("latin-1")))(d)
    return with_images(inputs, folder, damage)


def pairs_args(inputs: Inputs, folder: Path, rows: bytes, objective: str = "diffusion-dpo") -> list[str]:
    pairs = folder / "pairs"
    shutil.copytree(inputs.images, pairs / "images")
    (pairs / "pairs.jsonl").write_bytes(rows)

    def mutate(c):
        c["data"] = {"dataset": "preference-pairs", "options": {"path": str(pairs), "resolution": 32},
                     "batch_size": 2}
        c["objective"] = {"name": objective}
    return train_args(inputs, folder, mutate=mutate)


def pair_row(**extra) -> bytes:
    row = {"caption": "a red circle", "chosen": "images/0000.png", "rejected": "images/0001.png", **extra}
    return (json.dumps(row) + "\n").encode() * 4


@case("pairs-bad-json", "train", file_named("pairs/pairs.jsonl"))
def _(inputs, folder):
    return pairs_args(inputs, folder, b'{"caption": "x", \n')


@case("pairs-wrong-shape", "train", file_named("pairs/pairs.jsonl"))
def _(inputs, folder):
    return pairs_args(inputs, folder, b'["a red circle", "images/0000.png", "images/0001.png"]\n')


@case("pairs-missing-field", "train", file_named("pairs/pairs.jsonl"))
def _(inputs, folder):
    return pairs_args(inputs, folder, b'{"caption": "x", "chosen": "images/0000.png"}\n')


@case("pairs-field-not-a-string", "train", file_named("pairs/pairs.jsonl"))
def _(inputs, folder):
    return pairs_args(inputs, folder, pair_row(chosen=3))


@case("pairs-not-utf8", "train", file_named("pairs/pairs.jsonl"))
def _(inputs, folder):
    return pairs_args(inputs, folder, '{"caption": "caf\xe9"}\n'.encode("latin-1"))


@case("pairs-dcpo-without-rejected-captions", "train", file_named("pairs/pairs.jsonl"))
def _(inputs, folder):
    return pairs_args(inputs, folder, pair_row(), objective="dcpo")


@case("pairs-missing-image", "train", file_named("pairs/images/nowhere.png"))
def _(inputs, folder):
    return pairs_args(inputs, folder, pair_row(rejected="images/nowhere.png"))


@case("pairs-decompression-bomb", "train", file_named("pairs/images/bomb.png"))
def _(inputs, folder):
    args = pairs_args(inputs, folder, pair_row(rejected="images/bomb.png"))
    (folder / "pairs" / "images" / "bomb.png").write_bytes(png_bytes(Image.new("L", (13000, 13000))))
    return args


@case("prompts-file-not-utf8", "train", file_named("prompts.txt"))
def _(inputs, folder):
    (folder / "prompts.txt").write_bytes("caf\xe9\n".encode("latin-1"))

    def mutate(c):
        c["data"] = {"dataset": "prompts", "options": {"file": str(folder / "prompts.txt")}, "batch_size": 2}
        c["objective"] = {"name": "ddpo", "options": {"reward": "colourfulness"}}
    return train_args(inputs, folder, mutate=mutate)


# ----------------------------------------------------------------------------- report
@case("report-not-a-run", "report", file_named("nowhere"))
def _(inputs, folder):
    return ["report", str(folder / "nowhere")]


@case("report-damaged-history", "report", file_named("run/history.json"))
def _(inputs, folder):
    run = shutil.copytree(inputs.prior_run, folder / "run")
    (run / "history.json").write_text('{"loss": [0.1, ')
    return ["report", str(run)]


#: commands that read user input (``plugins`` reads none)
INPUT_COMMANDS = ("train", "sample", "report")
