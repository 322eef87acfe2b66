"""The music world: seeded, synthesised melodies with known ground truth and captions.

A clip is ``DURATION_S`` seconds of a monophonic melody at ``SAMPLE_RATE`` Hz. Its caption says
the tempo, the timbre, the order of its two registers (the *events* of the clip) and its
dynamics, e.g. ``"a fast bright melody, low notes then high notes, getting louder"``. The ground
truth holds the note list, the pitch class sounding in each spectrogram frame, the dynamics
curve (dB per frame) and the note onsets (seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 8000
HOP_LENGTH = 256
NUM_FRAMES = 64
NUM_SAMPLES = HOP_LENGTH * NUM_FRAMES  # 16384 samples, 2.048 s
DURATION_S = NUM_SAMPLES / SAMPLE_RATE

TEMPI = {"slow": (70.0, 95.0), "fast": (140.0, 180.0)}
TIMBRES = ("soft", "bright", "hollow")
ORDERS = {"rising": "low notes then high notes", "falling": "high notes then low notes"}
DYNAMICS = {"louder": "getting louder", "quieter": "getting quieter", "steady": "at a steady volume"}
#: MIDI ranges of the two registers (C4-G4 and C5-B5), a fourth apart so they never blur
REGISTERS = {"low": (60, 67), "high": (72, 83)}
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
QUIET_DB, LOUD_DB = -24.0, 0.0


def vocabulary() -> list[str]:
    """Every word a caption can use (the audio tokenizer spells each as one token)."""
    words = {"a", "melody"} | set(TEMPI) | set(TIMBRES)
    for phrase in (*ORDERS.values(), *DYNAMICS.values()):
        words |= set(phrase.split())
    return sorted(words)


@dataclass(frozen=True)
class Note:
    """One note: MIDI pitch, onset and duration in seconds."""

    pitch: int
    onset: float
    duration: float

    @property
    def pitch_class(self) -> int:
        return self.pitch % 12


@dataclass
class MusicClip:
    """A synthesised clip and its ground truth."""

    audio: np.ndarray  # (NUM_SAMPLES,) float32
    caption: str
    tempo: str
    bpm: float
    timbre: str
    order: str
    dynamics: str
    notes: list[Note] = field(default_factory=list)
    dynamics_db: np.ndarray | None = None  # (NUM_FRAMES,) the loudness curve applied

    @property
    def onsets(self) -> np.ndarray:
        """Note onsets in seconds."""
        return np.array([n.onset for n in self.notes], dtype=np.float64)

    def pitch_classes(self) -> np.ndarray:
        """(NUM_FRAMES,) the pitch class sounding at each frame centre, -1 where silent."""
        times = frame_times()
        out = np.full(NUM_FRAMES, -1, dtype=np.int64)
        for note in self.notes:
            inside = (times >= note.onset) & (times < note.onset + note.duration)
            out[inside] = note.pitch_class
        return out


def frame_times() -> np.ndarray:
    """Centre time (s) of each spectrogram frame (librosa's ``center=True`` convention)."""
    return np.arange(NUM_FRAMES) * HOP_LENGTH / SAMPLE_RATE


def caption_for(tempo: str, timbre: str, order: str, dynamics: str) -> str:
    """The caption of a clip with these attributes."""
    return f"a {tempo} {timbre} melody, {ORDERS[order]}, {DYNAMICS[dynamics]}"


def all_captions() -> list[str]:
    """Every caption of the grammar (tempo x timbre x order x dynamics), in a fixed order."""
    import itertools

    return [caption_for(*combo) for combo in itertools.product(TEMPI, TIMBRES, ORDERS, DYNAMICS)]


def parse_caption(caption: str) -> dict[str, str | None]:
    """The attributes a caption asks for (``None`` for those it does not mention)."""
    text = caption.lower()
    found: dict[str, str | None] = {"tempo": None, "timbre": None, "order": None, "dynamics": None}
    for word in TEMPI:
        if f" {word} " in f" {text} ":
            found["tempo"] = word
    for word in TIMBRES:
        if f" {word} " in f" {text} ":
            found["timbre"] = word
    for key, phrase in ORDERS.items():
        if phrase in text:
            found["order"] = key
    for key, phrase in DYNAMICS.items():
        if phrase in text:
            found["dynamics"] = key
    return found


def _harmonics(timbre: str, f0: float) -> list[tuple[float, float]]:
    """(frequency, amplitude) partials of a note, kept below the Nyquist margin."""
    if timbre == "soft":
        partials = [(1, 1.0), (2, 0.15)]
    elif timbre == "bright":
        partials = [(k, 1.0 / k) for k in range(1, 9)]
    elif timbre == "hollow":
        partials = [(k, 1.0 / k) for k in range(1, 10, 2)]
    else:
        raise ValueError(f"unknown timbre {timbre!r}; known: {', '.join(TIMBRES)}")
    return [(k * f0, a) for k, a in partials if k * f0 < 0.45 * SAMPLE_RATE]


def dynamics_curve(kind: str, times: np.ndarray) -> np.ndarray:
    """Loudness in dB at ``times`` (s) for a dynamics kind."""
    progress = np.clip(times / DURATION_S, 0.0, 1.0)
    if kind == "louder":
        return QUIET_DB + (LOUD_DB - QUIET_DB) * progress
    if kind == "quieter":
        return LOUD_DB + (QUIET_DB - LOUD_DB) * progress
    if kind == "steady":
        return np.full_like(times, -8.0)
    raise ValueError(f"unknown dynamics {kind!r}; known: {', '.join(DYNAMICS)}")


def synthesize(notes: list[Note], timbre: str, dynamics: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Render notes as a waveform (float32, peak ≤ 1) with the given timbre and dynamics."""
    t = np.arange(NUM_SAMPLES) / SAMPLE_RATE
    audio = np.zeros(NUM_SAMPLES, dtype=np.float64)
    for note in notes:
        start = int(round(note.onset * SAMPLE_RATE))
        stop = min(NUM_SAMPLES, int(round((note.onset + note.duration) * SAMPLE_RATE)))
        if stop <= start:
            continue
        local = t[start:stop] - t[start]
        attack = np.minimum(local / 0.01, 1.0)
        release = np.minimum((t[stop - 1] - t[start:stop]) / 0.05 + 1e-3, 1.0)  # no click at the note end
        decay = np.exp(-local / max(0.35 * note.duration, 1e-3)) * 0.6 + 0.4
        envelope = attack * release * decay
        f0 = 440.0 * 2.0 ** ((note.pitch - 69) / 12)
        phase = rng.uniform(0, 2 * np.pi) if rng is not None else 0.0
        partials = _harmonics(timbre, f0)
        tone = sum(a * np.sin(2 * np.pi * f * local + phase * k) for k, (f, a) in enumerate(partials, 1))
        tone /= np.sqrt(sum(a * a for _, a in partials))  # every note equally loud, whatever its register
        audio[start:stop] += envelope * tone
    peak = np.abs(audio).max()
    if peak > 0:
        audio /= peak
    gain = 10.0 ** (dynamics_curve(dynamics, t) / 20.0)
    return (audio * gain * 0.9).astype(np.float32)


def random_notes(rng: np.random.Generator, bpm: float, order: str) -> list[Note]:
    """One note per beat from a random major scale; the first half of the clip in one register,
    the second half in the other (``rising``: low then high)."""
    root = int(rng.integers(0, 12))
    beat = 60.0 / bpm
    first, second = ("low", "high") if order == "rising" else ("high", "low")
    onset = float(rng.uniform(0.02, 0.12))
    notes = []
    while onset < DURATION_S - 0.15:
        register = REGISTERS[first if onset < DURATION_S / 2 else second]
        candidates = [p for p in range(register[0], register[1] + 1) if (p - root) % 12 in MAJOR_SCALE]
        pitch = int(rng.choice(candidates))
        if notes and pitch == notes[-1].pitch:  # a repeated pitch would hide the onset in the melody
            pitch = int(rng.choice([p for p in candidates if p != pitch]))
        notes.append(Note(pitch, round(onset, 4), round(min(0.85 * beat, DURATION_S - onset), 4)))
        onset += beat
    return notes


def random_clip(seed: int, *, tempo: str | None = None, timbre: str | None = None,
                order: str | None = None, dynamics: str | None = None) -> MusicClip:
    """The clip of ``seed``; attributes not given are drawn from the seed."""
    rng = np.random.default_rng(seed)
    tempo = tempo or str(rng.choice(list(TEMPI)))
    timbre = timbre or str(rng.choice(TIMBRES))
    order = order or str(rng.choice(list(ORDERS)))
    dynamics = dynamics or str(rng.choice(list(DYNAMICS)))
    for name, value, known in (("tempo", tempo, TEMPI), ("timbre", timbre, TIMBRES),
                               ("order", order, ORDERS), ("dynamics", dynamics, DYNAMICS)):
        if value not in known:
            raise ValueError(f"unknown {name} {value!r}; known: {', '.join(known)}")
    bpm = float(rng.uniform(*TEMPI[tempo]))
    notes = random_notes(rng, bpm, order)
    audio = synthesize(notes, timbre, dynamics, rng)
    return MusicClip(audio=audio, caption=caption_for(tempo, timbre, order, dynamics), tempo=tempo,
                     bpm=bpm, timbre=timbre, order=order, dynamics=dynamics, notes=notes,
                     dynamics_db=dynamics_curve(dynamics, frame_times()))
