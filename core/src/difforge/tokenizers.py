"""Build small CLIP BPE tokenizers for closed-vocabulary domains (no downloads)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path


def build_clip_tokenizer(path: str | Path, words: Iterable[str], max_length: int = 16):
    """Write CLIP BPE files (``vocab.json``, ``merges.txt``, ``tokenizer_config.json``) whose
    merges spell each of ``words`` as one token (other text falls back to characters), and
    return the ``transformers.CLIPTokenizer`` loaded from them."""
    from transformers import CLIPTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(33, 127)]
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    merges: list[str] = []
    seen: set[str] = set()
    for word in dict.fromkeys(w.lower() for w in words):
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        current = symbols[0]
        for nxt in symbols[1:]:
            merge = f"{current} {nxt}"
            if merge not in seen:
                seen.add(merge)
                merges.append(merge)
            current = current + nxt
            vocab.setdefault(current, len(vocab))
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": max_length,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
    }))
    tokenizer = CLIPTokenizer.from_pretrained(path)
    tokenizer.save_pretrained(path)
    return tokenizer
