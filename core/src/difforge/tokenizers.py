"""Build small CLIP BPE tokenizers for closed-vocabulary domains (no downloads)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def learn_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """BPE merges (in rank order) learned by ``tokenizers``' BpeTrainer so that every word of
    ``words`` encodes to exactly one ``word</w>`` token under CLIP's rank-ordered BPE."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    words = list(dict.fromkeys(w.lower() for w in words))
    tokenizer = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=1_000_000, min_frequency=0, show_progress=False,
                                  end_of_word_suffix="</w>", special_tokens=list(SPECIAL_TOKENS))
    tokenizer.train_from_iterator(words, trainer)
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def build_clip_tokenizer(path: str | Path, words: Iterable[str], max_length: int = 16):
    """Write CLIP BPE files (``vocab.json``, ``merges.txt``, ``tokenizer_config.json``) whose
    merges spell each of ``words`` as one token (other text falls back to characters), and
    return the ``transformers.CLIPTokenizer`` loaded from them."""
    from transformers import CLIPTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "tokenizer.json").unlink(missing_ok=True)  # a stale fast-tokenizer file would win over the BPE files
    words = list(dict.fromkeys(w.lower() for w in words))
    chars = [chr(c) for c in range(33, 127)]
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *chars, *(c + "</w>" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    merges = learn_merges(words)
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": max_length,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
    }))
    tokenizer = CLIPTokenizer.from_pretrained(path)
    split = {w: tokenizer.tokenize(w) for w in words}
    broken = [f"{w} -> {pieces}" for w, pieces in split.items() if pieces != [w + "</w>"]]
    if broken:
        raise ValueError(f"tokenizer at {path} does not spell every word as one token: {'; '.join(broken)}")
    tokenizer.save_pretrained(path)
    return tokenizer
