"""Score rules: Winoground's text / image / group scores, option accuracy (ARO, SugarCrepe),
zero-shot accuracy and retrieval recall@k, all from similarity arrays."""

from __future__ import annotations

import numpy as np

#: chance levels of Winoground's three scores (random similarities)
WINOGROUND_CHANCE = {"text": 0.25, "image": 0.25, "group": 1 / 6}


def winoground(similarity) -> dict[str, float]:
    """Winoground scores from ``similarity[n, i, j]`` = score of image ``i`` with caption ``j``
    (caption ``i`` is image ``i``'s): *text* — each image prefers its own caption; *image* — each
    caption prefers its own image; *group* — both. Ties count as wrong."""
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 3 or s.shape[1:] != (2, 2):
        raise ValueError(f"winoground: similarity must be (n, 2, 2), got {s.shape}")
    text = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    image = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    return {"text": float(text.mean()), "image": float(image.mean()), "group": float((text & image).mean())}


def option_accuracy(scores, true_index) -> float:
    """The share of items whose true option scores strictly highest (``scores[n, k]``)."""
    s = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(true_index)
    best = s[np.arange(len(s)), truth]
    others = s.copy()
    others[np.arange(len(s)), truth] = -np.inf
    return float((best > others.max(axis=1)).mean())


def zero_shot_accuracy(similarity, labels, classes) -> float:
    """Accuracy of choosing the most similar class (``similarity[n, len(classes)]``)."""
    s = np.asarray(similarity)
    predicted = [classes[i] for i in s.argmax(axis=1)]
    return float(np.mean([p == label for p, label in zip(predicted, labels, strict=True)]))


def recall_at_k(similarity, query_keys, target_keys, k: int) -> float:
    """Retrieval recall@k: a query (row) is a hit when one of its ``k`` most similar targets
    (columns) has the query's key (equal captions count as the same target)."""
    s = np.asarray(similarity)
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    targets = np.asarray(target_keys, dtype=object)
    return float(np.mean([query_keys[i] in set(targets[top[i]]) for i in range(len(s))]))


__all__ = ["WINOGROUND_CHANCE", "option_accuracy", "recall_at_k", "winoground", "zero_shot_accuracy"]
