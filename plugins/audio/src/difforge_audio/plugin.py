"""Registers the audio plugin with difforge: datasets, a reward, the embedded models and CLI
sub-commands. Components are lazy
references and only difforge's public plugin API is used."""

from __future__ import annotations

from difforge.plugin_api import Command, hookimpl, lazy


@hookimpl
def difforge_register_datasets():
    return {"music-clips": lazy("difforge_audio.data:MusicClipsDataset"),
            "music-controls": lazy("difforge_audio.data:MusicControlsDataset"),
            "audio-preference-pairs": lazy("difforge_audio.data:AudioPreferencePairsDataset")}


@hookimpl
def difforge_register_rewards():
    return {"music-caption-adherence": lazy("difforge_audio.rewards:MusicCaptionAdherence", call=True)}


@hookimpl
def difforge_register_renderers():
    return {"spectrogram": lazy("difforge_audio.render:render_spectrograms")}


@hookimpl
def difforge_resolve_model(reference):
    from .models import MODELS_DIR

    path = MODELS_DIR / reference
    return str(path) if reference == "music-sd-tiny" and (path / "difforge_backbone.json").exists() else None


@hookimpl
def difforge_register_commands():
    return {
        "audio-generate": Command("generate music-world clips (.wav + spectrogram/control plot), optionally "
                                  "under Music ControlNet controls taken from a .wav",
                                  "difforge_audio.cli:configure_generate", "difforge_audio.cli:run_generate"),
        "audio-preferences": Command("build Tango 2 style preference pairs (clips from prompts with misordered / "
                                     "missing events)", "difforge_audio.cli:configure_preferences",
                                     "difforge_audio.cli:run_preferences"),
    }
