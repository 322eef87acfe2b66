"""Build small CLIP BPE tokenizers for closed-vocabulary domains (no downloads): the tokenizer
of a tiny text-conditioned model trained from scratch (the zoo's and the plugins' embedded
models, the testkit's tiny pipelines)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def learn_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """BPE merges in rank order (Sennrich et al. 2016, "Neural Machine Translation of Rare Words
    with Subword Units") such that every word of ``words`` encodes to exactly one ``word</w>``
    token under CLIP's rank-ordered BPE.

    Each round merges the most frequent adjacent symbol pair, ties broken by the pair itself, so
    the merges (and hence the token ids) are the same in every process. ``tokenizers``'
    ``BpeTrainer`` breaks ties in hash order, which made the vocabulary differ between runs.
    """
    spelled = [(*w[:-1], w[-1] + "</w>") for w in dict.fromkeys(w.lower() for w in words) if w]
    merges: list[tuple[str, str]] = []
    while True:
        counts = Counter(pair for symbols in spelled for pair in pairwise(symbols))
        if not counts:
            return merges
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges.append(pair)
        spelled = [merge_pair(symbols, pair) for symbols in spelled]


def merge_pair(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """``symbols`` with every non-overlapping occurrence of ``pair`` (left to right) joined."""
    out: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


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
