"""The closed-vocabulary CLIP tokenizer builder spells every word as one BPE token."""

import sys

import pytest
from helpers import ROOT

from difforge_testkit import tokenizers
from difforge_testkit.tokenizers import build_clip_tokenizer

sys.path.insert(0, str(ROOT / "packages" / "zoo" / "training"))
from train_shapes_sd import VOCABULARY  # noqa: E402


def test_every_vocabulary_word_is_one_token(tmp_path):
    tokenizer = build_clip_tokenizer(tmp_path, VOCABULARY, max_length=32)
    for word in VOCABULARY:
        assert tokenizer.tokenize(word) == [word + "</w>"], word
    # words that share prefixes with others ("an" in "orange" and "triangle") are the hard case
    assert tokenizer.tokenize("a large orange triangle at the bottom") == [
        "a</w>", "large</w>", "orange</w>", "triangle</w>", "at</w>", "the</w>", "bottom</w>"]
    # text outside the vocabulary falls back to characters, as DreamBooth's rare tokens need
    assert tokenizer.tokenize("zwx") == ["z", "w", "x</w>"]


def test_a_stale_fast_tokenizer_file_does_not_win(tmp_path):
    build_clip_tokenizer(tmp_path, ["and"], max_length=8)
    tokenizer = build_clip_tokenizer(tmp_path, ["orange", "triangle"], max_length=8)
    assert tokenizer.tokenize("orange triangle") == ["orange</w>", "triangle</w>"]


def test_a_merge_table_that_splits_a_word_is_refused(tmp_path, monkeypatch):
    # "a n" outranks "or a", so BPE turns "orange" into "or an g e</w>": the old left-to-right bug
    left_to_right = [("a", "n"), ("o", "r"), ("or", "a"), ("ora", "n"), ("oran", "g"), ("orang", "e</w>")]
    monkeypatch.setattr(tokenizers, "learn_merges", lambda words: left_to_right)
    with pytest.raises(ValueError, match="orange -> "):
        tokenizers.build_clip_tokenizer(tmp_path, ["an", "orange"], max_length=8)


def test_the_vocabulary_is_the_same_in_every_process(tmp_path):
    """Token ids feed the text encoder's embedding table, so a training script re-run must see
    the same ones (tokenizers' BpeTrainer broke frequency ties in hash order)."""
    import subprocess

    script = ("import json, sys; from difforge_testkit.tokenizers import learn_merges; "
              "print(json.dumps(learn_merges(sys.argv[1:])))")
    runs = {subprocess.run([sys.executable, "-c", script, *VOCABULARY], capture_output=True, text=True,
                           check=True).stdout for _ in range(4)}
    assert len(runs) == 1


def test_merges_follow_frequency_then_pair_order():
    from difforge_testkit.tokenizers import learn_merges

    # "a n" is in three words; then "an d</w>" and "r e" are in two each, a tie broken by the pair
    merges = learn_merges(["and", "ant", "band", "red", "rest"])
    assert merges[:3] == [("a", "n"), ("an", "d</w>"), ("r", "e")]
