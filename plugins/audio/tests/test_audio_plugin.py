"""difforge-audio as a plugin: registered through the entry point, its datasets and reward,
clear errors on bad input, and the core without it."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

pytest.importorskip("difforge_audio")

from difforge import get_registry  # noqa: E402
from difforge_audio.codec import MelCodec  # noqa: E402
from difforge_audio.data import AudioPreferencePairsDataset, MusicClipsDataset, write_wav  # noqa: E402
from difforge_audio.music import SAMPLE_RATE, random_clip  # noqa: E402
from difforge_audio.preferences import perturb_events  # noqa: E402
from difforge_testkit import check_plugin  # noqa: E402


def test_plugin_loads_and_honours_the_protocols():
    registered = check_plugin("difforge-audio")
    assert set(registered["datasets"]) == {"music-clips", "music-controls", "audio-preference-pairs"}
    assert registered["rewards"] == ["music-caption-adherence"]
    assert {"audio-generate", "audio-preferences"} <= set(registered["commands"])


def test_reward_scores_spectrograms_and_rejects_images():
    reward = get_registry("rewards").get("music-caption-adherence")
    codec = MelCodec()
    clips = [random_clip(s) for s in range(3)]
    specs = torch.from_numpy(np.stack([codec.encode(c.audio) for c in clips]))
    assert reward(specs, [c.caption for c in clips]).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="music-caption-adherence.*1-channel spectrograms"):
        reward(torch.zeros(1, 3, 64, 64), [clips[0].caption])
    with pytest.raises(ValueError, match="needs the prompts"):
        reward(specs)


def test_music_clips_dataset():
    data = MusicClipsDataset(count=3, seed=1)
    item = data[2]
    assert len(data) == 3 and item["sample"].shape == (1, 64, 64) and "melody" in item["caption"]
    assert torch.equal(item["sample"], MusicClipsDataset(count=3, seed=1)[2]["sample"])


def test_event_perturbations():
    caption = "a fast bright melody, low notes then high notes, getting louder"
    assert perturb_events(caption, "misordered") == "a fast bright melody, high notes then low notes, getting louder"
    assert perturb_events(caption, "missing") == "a fast bright melody, getting louder"
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb_events(caption, "shuffled")


def test_preference_pairs_from_audio_and_stored_spectrograms(tmp_path):
    codec = MelCodec()
    a, b = random_clip(0), random_clip(1)
    write_wav(tmp_path / "audio" / "a.wav", a.audio)
    write_wav(tmp_path / "audio" / "b.wav", b.audio)
    (tmp_path / "spectrograms").mkdir()
    np.save(tmp_path / "spectrograms" / "a.npy", codec.encode(a.audio), allow_pickle=False)
    rows = [{"caption": a.caption, "chosen": "audio/a.wav", "rejected": "audio/b.wav",
             "chosen_spectrogram": "spectrograms/a.npy"}]
    (tmp_path / "pairs.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    item = AudioPreferencePairsDataset(path=str(tmp_path))[0]
    assert torch.equal(item["sample_chosen"], torch.from_numpy(codec.encode(a.audio)))
    assert (item["sample_rejected"] - torch.from_numpy(codec.encode(b.audio))).abs().max() < 0.02  # 16-bit wav
    assert item["caption_rejected"] == a.caption


def test_preference_pairs_bad_input_is_one_clear_line(tmp_path):
    from difforge import DataError

    with pytest.raises(DataError, match=r"data.options.path: .*nowhere.* does not exist"):
        AudioPreferencePairsDataset(path=str(tmp_path / "nowhere"))
    (tmp_path / "pairs.jsonl").write_text('{"caption": "x", "chosen": "a.wav"}\n')
    with pytest.raises(DataError, match=r"pairs.jsonl:1: missing field\(s\) rejected"):
        AudioPreferencePairsDataset(path=str(tmp_path))
    (tmp_path / "pairs.jsonl").write_text('{"caption": "x", "chosen": "a.wav", "rejected": "b.wav"}\n{oops\n')
    with pytest.raises(DataError, match=r"pairs.jsonl:2: not a JSON line"):
        AudioPreferencePairsDataset(path=str(tmp_path))
    (tmp_path / "pairs.jsonl").write_text('{"caption": "x", "chosen": "a.wav", "rejected": "b.wav"}\n')
    (tmp_path / "a.wav").write_bytes(b"RIFF not really a wave file")
    with pytest.raises(DataError, match=r"cannot read audio .*a.wav"):
        AudioPreferencePairsDataset(path=str(tmp_path))[0]
    import soundfile

    soundfile.write(str(tmp_path / "a.wav"), np.zeros(1000, np.float32), SAMPLE_RATE * 2)
    with pytest.raises(DataError, match=r"a.wav: sample rate 16000 Hz, expected 8000 Hz"):
        AudioPreferencePairsDataset(path=str(tmp_path))[0]
    (tmp_path / "pairs.jsonl").write_text(
        '{"caption": "x", "chosen": "a.wav", "rejected": "b.wav", "chosen_spectrogram": "a.npy"}\n')
    np.save(tmp_path / "a.npy", np.zeros((3, 64, 64), np.float32), allow_pickle=False)
    with pytest.raises(DataError, match=r"a.npy: spectrogram shape \(3, 64, 64\), expected \(1, 64, frames\)"):
        AudioPreferencePairsDataset(path=str(tmp_path))[0]
    np.save(tmp_path / "a.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"cannot read spectrogram .*a.npy"):  # never unpickled
        AudioPreferencePairsDataset(path=str(tmp_path))[0]


HIDE_AUDIO = textwrap.dedent("""
    import importlib.metadata as metadata, sys
    found = metadata.entry_points
    metadata.entry_points = lambda **kw: type(found(**kw))(
        e for e in found(**kw) if not e.value.startswith("difforge_audio"))
    sys.modules["difforge_audio"] = None  # as if uninstalled: importing it fails
    from difforge.plugin_api import cli_main as main
    from difforge.plugins import get_registry
    code = main(["plugins"])
    assert "music-caption-adherence" not in get_registry("rewards").names()
    assert "shapes-alignment" in get_registry("rewards").names()
    sys.exit(code)
""")


def test_core_without_the_plugin_lists_it_as_not_installed():
    proc = subprocess.run([sys.executable, "-c", HIDE_AUDIO], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("difforge-audio"))
    assert "not installed" in row
    assert "pip install -e plugins/audio" in proc.stdout


def test_cli_rejects_bad_arguments_in_one_line(capsys, tmp_path):
    from difforge.plugin_api import cli_main as main

    for args, message in ((["--frames", "3:2"], "argument --frames: '3:2': need 0 <= START < STOP <= 64"),
                          (["--frames", "a:b"], "argument --frames: 'a:b' is not START:STOP"),
                          (["--controls", "melody,beat"], "argument --controls: unknown control(s) beat")):
        with pytest.raises(SystemExit) as exit_info:
            main(["audio-generate", "--prompt", "a slow soft melody", *args])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert main(["audio-preferences", "--prompts", str(tmp_path / "none.txt"), "--out", str(tmp_path)]) == 1
    assert f"--prompts: {tmp_path / 'none.txt'} does not exist" in capsys.readouterr().err
    assert main(["audio-generate", "--prompt", "x", "--controls-from", str(tmp_path / "none.wav")]) == 1
    assert "cannot read audio" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_spectrogram_renderer_draws_the_spectrogram_over_its_waveform(tmp_path):
    """The plugin's ``spectrogram`` renderer (difforge_register_renderers): grids of music samples
    show each log-mel image (low bands at the bottom) above the waveform it decodes to."""
    from PIL import Image

    from difforge.plugin_api import save_grid
    from difforge_audio.music import random_clip
    from difforge_audio.render import WAVE_ROWS

    specs = torch.from_numpy(np.stack([MelCodec().encode(random_clip(seed).audio) for seed in (1, 2)]))
    tiles = get_registry("renderers").get("spectrogram")(specs)
    mels, frames = specs.shape[-2:]
    assert tiles.shape == (2, mels + 2 + WAVE_ROWS, frames, 3) and tiles.dtype == np.uint8
    wave = tiles[:, mels + 2 :]
    assert ((wave == 40).all(axis=-1).sum(axis=1) > 0).mean() > 0.9  # a trace in (almost) every column
    assert tiles[:, :mels].std() > 20  # the spectrogram is not flat
    path = save_grid(specs, tmp_path / "music.png", renderer="spectrogram", row_labels=["clip 1", "clip 2"], columns=1)
    assert Image.open(path).height >= 2 * (mels + 2 + WAVE_ROWS)


def test_music_controls_masks_are_seeded_per_epoch_and_item():
    """The ``music-controls`` dataset draws each item's control masks from (mask_seed, epoch,
    index): the same in every read and with loader workers, fresh in the next epoch."""
    from torch.utils.data import DataLoader

    from difforge_audio.data import MusicControlsDataset

    data = MusicControlsDataset(count=6, seed_offset=900_000)
    first = [data[i]["controlnet_cond"] for i in range(6)]
    assert all(torch.equal(a, data[i]["controlnet_cond"]) for i, a in enumerate(first))
    read = [b["controlnet_cond"] for b in DataLoader(data, batch_size=3, num_workers=2)]
    assert torch.equal(torch.cat(read), torch.stack(first))
    data.set_epoch(1)
    assert any(not torch.equal(a, data[i]["controlnet_cond"]) for i, a in enumerate(first))
    other = MusicControlsDataset(count=6, seed_offset=900_000, mask_seed=1)
    assert any(not torch.equal(a, other[i]["controlnet_cond"]) for i, a in enumerate(first))
