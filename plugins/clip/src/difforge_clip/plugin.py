"""Registers difforge-clip: the CLIP objectives and the ``clip-distill`` / ``clip-eval``
commands. Components are lazy references; only difforge's public plugin API is used."""

from __future__ import annotations

from difforge.plugin_api import Command, hookimpl, lazy


@hookimpl
def difforge_register_objectives():
    return {"clip-finetune": lazy("difforge_clip.objectives:ClipFinetuneObjective"),
            "negclip": lazy("difforge_clip.objectives:NegClipObjective"),
            "sds-clip": lazy("difforge_clip.objectives:SdsClipObjective"),
            "diva": lazy("difforge_clip.objectives:DivaObjective")}


@hookimpl
def difforge_register_commands():
    return {
        "clip-distill": Command("tune the zoo's CLIP with SDS-CLIP (or clip-finetune, negclip, diva) through the "
                                "frozen shapes-sd-tiny, then evaluate it", "difforge_clip.cli:configure_distill",
                                "difforge_clip.cli:run_distill"),
        "clip-eval": Command("evaluate a CLIP (or the teacher as a diffusion classifier) on the compositional "
                             "quadruples, ARO/SugarCrepe-style items and retention", "difforge_clip.cli:configure_eval",
                             "difforge_clip.cli:run_eval"),
    }
