"""The music world: generator, codec, extracted controls and the analytic scorer on ground truth."""

import numpy as np
import pytest

pytest.importorskip("difforge_audio")

from difforge_audio import features, scorer  # noqa: E402
from difforge_audio.codec import MelCodec, magnitude_snr_db, spectral_convergence  # noqa: E402
from difforge_audio.music import (  # noqa: E402
    NUM_FRAMES,
    NUM_SAMPLES,
    caption_for,
    parse_caption,
    random_clip,
    vocabulary,
)

CODEC = MelCodec()


@pytest.fixture(scope="module")
def clips():
    out = [random_clip(seed) for seed in range(48)]
    return [(clip, CODEC.encode(clip.audio)) for clip in out]


def test_clips_are_deterministic_and_follow_their_caption():
    a, b = random_clip(7), random_clip(7)
    assert np.array_equal(a.audio, b.audio) and a.caption == b.caption
    assert not np.array_equal(a.audio, random_clip(8).audio)
    assert a.audio.shape == (NUM_SAMPLES,) and np.abs(a.audio).max() <= 1.0
    assert parse_caption(a.caption) == {"tempo": a.tempo, "timbre": a.timbre, "order": a.order, "dynamics": a.dynamics}
    clip = random_clip(3, tempo="fast", order="rising", dynamics="louder", timbre="soft")
    assert clip.caption == caption_for("fast", "soft", "rising", "louder")
    assert {"low", "high", "then", "louder"} <= set(vocabulary())
    with pytest.raises(ValueError, match="unknown timbre 'loud'"):
        random_clip(0, timbre="loud")


def test_spectrogram_range_and_shape(clips):
    for _, spec in clips[:8]:
        assert spec.shape == (1, CODEC.n_mels, NUM_FRAMES) and spec.dtype == np.float32
        assert -1.0 <= spec.min() and spec.max() <= 1.0 and spec.max() > 0.5
    assert max(spec.max() for _, spec in clips) < 0.99  # the loudest frames are not clipped


def test_codec_round_trip_quality():
    """Griffin-Lim from 64 mel bands: measured SC ≈ 0.5 and magnitude SNR ≈ 6 dB on this world."""
    conv, snr, drift = [], [], []
    for seed in range(4):
        clip = random_clip(seed)
        spec = CODEC.encode(clip.audio)
        audio = CODEC.decode(spec)
        assert audio.shape == (NUM_SAMPLES,)
        conv.append(spectral_convergence(clip.audio, audio))
        snr.append(magnitude_snr_db(clip.audio, audio))
        drift.append(np.abs(CODEC.encode(audio) - spec).mean())
    assert np.mean(conv) < 0.65 and np.mean(snr) > 4.0 and np.mean(drift) < 0.15
    noise = np.random.default_rng(0).normal(size=NUM_SAMPLES).astype(np.float32) * 0.3
    assert spectral_convergence(random_clip(0).audio, noise) > 1.0  # the metric separates a wrong signal


def test_codec_rejects_bad_shapes():
    with pytest.raises(ValueError, match="one channel"):
        CODEC.encode(np.zeros((2, NUM_SAMPLES), np.float32))
    with pytest.raises(ValueError, match=r"\(64, frames\) spectrogram"):
        CODEC.to_mel_power(np.zeros((1, 32, 64), np.float32))


def test_extracted_controls_match_ground_truth(clips):
    melody = [features.melody_accuracy(features.melody(s), c.pitch_classes()) for c, s in clips]
    rhythm = [features.rhythm_f1(features.onsets(s), c.onsets) for c, s in clips]
    moving = [(c, s) for c, s in clips if c.dynamics != "steady"]
    dynamics = [features.dynamics_correlation(features.dynamics(s), c.dynamics_db) for c, s in moving]
    assert np.mean(melody) >= 0.98 and np.mean(rhythm) >= 0.95 and np.mean(dynamics) >= 0.7
    shuffled = [features.melody_accuracy(features.melody(s), clips[(i + 1) % len(clips)][0].pitch_classes())
                for i, (_, s) in enumerate(clips)]
    assert np.mean(shuffled) < 0.3  # another clip's melody does not pass


def test_rhythm_f1_matching():
    assert features.rhythm_f1([0.1, 0.5], [0.12, 0.55]) == 1.0
    assert features.rhythm_f1([0.1, 0.5], [0.2, 0.55]) == pytest.approx(2 * 0.5 * 0.5 / 1.0)
    assert features.rhythm_f1([0.1, 0.11], [0.1]) == pytest.approx(2 / 3)  # one-to-one matching
    assert features.rhythm_f1([], []) == 1.0 and features.rhythm_f1([0.3], []) == 0.0


def test_scorer_reads_generator_ground_truth(clips):
    for clip, spec in clips:
        seen = scorer.describe(spec)
        assert seen == {"tempo": clip.tempo, "order": clip.order, "dynamics": clip.dynamics}, clip.caption
        assert scorer.caption_adherence(spec, clip.caption)["reward"] == 1.0
    clip, spec = clips[0]
    other = caption_for("slow" if clip.tempo == "fast" else "fast", clip.timbre,
                        "falling" if clip.order == "rising" else "rising", clip.dynamics)
    assert scorer.caption_adherence(spec, other)["reward"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="asks for no tempo"):
        scorer.caption_adherence(spec, "a bright melody")


def test_scorer_and_extractors_tolerate_a_noise_floor(clips):
    """Generated spectrograms carry a noise floor (about -0.5 here, against -1 for silence in the
    data); the readings must survive it."""
    rng = np.random.default_rng(0)
    right, melody, rhythm = [], [], []
    for clip, spec in clips:
        noisy = np.maximum(spec, np.clip(rng.normal(-0.5, 0.2, spec.shape), -1, 1)).astype(np.float32)
        seen = scorer.describe(noisy)
        right += [seen[k] == getattr(clip, k) for k in seen]
        melody.append(features.melody_accuracy(features.melody(noisy), clip.pitch_classes()))
        rhythm.append(features.rhythm_f1(features.onsets(noisy), clip.onsets))
    assert np.mean(right) >= 0.9 and np.mean(melody) >= 0.95 and np.mean(rhythm) >= 0.85
