"""The audio plugin's input surfaces in the bad-input corpus: a damaged or wrong-rate .wav and a
non-UTF-8 prompts file are one ``difforge: error:`` line naming the file, and nothing is written."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("difforge_audio")

from difforge.plugin_api import cli_main as main  # noqa: E402
from difforge_audio.music import SAMPLE_RATE  # noqa: E402


def write_wav_at(path, rate):
    import soundfile

    soundfile.write(str(path), np.zeros(rate // 4, dtype=np.float32), rate, subtype="PCM_16")
    return path


CASES = {
    "garbage-wav": (lambda d: (d / "x.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVE garbage") and d / "x.wav",
                    "generate"),
    "truncated-wav": (lambda d: _truncated(write_wav_at(d / "x.wav", SAMPLE_RATE)), "generate"),
    "wrong-rate-wav": (lambda d: write_wav_at(d / "x.wav", 44100), "generate"),
    "prompts-not-utf8": (lambda d: (d / "p.txt").write_bytes("caf\xe9\n".encode("latin-1")) and d / "p.txt",
                         "preferences"),
}


def _truncated(path):
    path.write_bytes(path.read_bytes()[:30])
    return path


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_audio_input_is_one_line_naming_the_file(name, tmp_path, capsys):
    make, command = CASES[name]
    bad = make(tmp_path)
    out = tmp_path / "out"
    if command == "generate":
        argv = ["audio-generate", "--prompt", "a piano melody", "--controls-from", str(bad), "--out", str(out)]
    else:
        argv = ["audio-preferences", "--prompts", str(bad), "--out", str(out)]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err[-2000:]
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("difforge: error: ") and str(bad) in errors[0], err[-2000:]
    assert not out.exists()
