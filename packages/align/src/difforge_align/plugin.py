"""Registers the alignment objectives and the ``preference-pairs`` command with difforge.
Every component is a lazy reference: nothing here imports torch."""

from __future__ import annotations

from difforge.plugin_api import Command, hookimpl, lazy

OBJECTIVES = {
    "diffusion-dpo": "difforge_align.dpo:DiffusionDPOObjective",
    "dcpo": "difforge_align.dpo:DCPOObjective",
    "pso": "difforge_align.pso:PSOObjective",
    "seppo": "difforge_align.seppo:SePPOObjective",
    "d3po": "difforge_align.d3po:D3POObjective",
    "ddpo": "difforge_align.ddpo:DDPOObjective",
    "rlcm": "difforge_align.ddpo:RLCMObjective",
    "texforce": "difforge_align.texforce:TexForceObjective",
    "alignprop": "difforge_align.alignprop:AlignPropObjective",
}


@hookimpl
def difforge_register_objectives():
    return {name: lazy(reference) for name, reference in OBJECTIVES.items()}


@hookimpl
def difforge_register_commands():
    return {"preference-pairs": Command("build pairwise preference data from a model's samples ranked by a reward",
                                        "difforge_align.cli:configure_preference_pairs",
                                        "difforge_align.cli:run_preference_pairs")}
