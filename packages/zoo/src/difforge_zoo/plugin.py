"""Registers the shapes world with difforge. Every component is a lazy reference, so loading
the plugin imports neither torch nor the world's modules."""

from __future__ import annotations

from difforge.plugin_api import Command, hookimpl, lazy


@hookimpl
def difforge_register_captioners():
    return {"shapes-captioner": lazy("difforge_zoo.rewards:ShapesCaptioner", call=True)}


@hookimpl
def difforge_register_datasets():
    return {"shapes": lazy("difforge_zoo.data:ShapesDataset")}


@hookimpl
def difforge_register_objectives():
    return {"ip-adapter": lazy("difforge_zoo.ip_adapter:IpAdapterObjective"),
            "clip-contrastive": lazy("difforge_zoo.clip_pretraining:ClipContrastiveObjective")}


@hookimpl
def difforge_register_rewards():
    return {"shapes-alignment": lazy("difforge_zoo.rewards:ShapesAlignment", call=True)}


@hookimpl
def difforge_resolve_model(reference):
    from .models import MARKERS, MODELS, MODELS_DIR

    path = MODELS_DIR / reference
    return str(path) if reference in MODELS and (path / MARKERS.get(reference, "model_index.json")).exists() else None


@hookimpl
def difforge_register_commands():
    return {"quickstart": Command("teach shapes-sd-tiny a new concept with DreamBooth + LoRA, "
                                  "and measure it before/after", "difforge_zoo.quickstart:configure",
                                  "difforge_zoo.quickstart:run")}
