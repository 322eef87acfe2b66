"""One evaluation: a scorer (a student :class:`~difforge_clip.student.ClipEncoder` or the
teacher :class:`~difforge_clip.teacher.DiffusionClassifier`) on the benchmark, and a CLIP's
retention (zero-shot shape / colour classification, image↔text retrieval)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from difforge_zoo.shapes import BASE_SHAPES, COLOURS

from . import scores
from .benchmark import Benchmark, RetentionSet
from .compositions import caption


def compositional(scorer, benchmark: Benchmark) -> dict[str, float]:
    """Winoground text / image / group per kind and overall, and option accuracy per ARO and
    SugarCrepe kind (keys ``winoground/<kind>/<score>``, ``aro/<kind>``, ``sugarcrepe/<kind>``,
    and the means ``aro/mean``, ``sugarcrepe/mean``)."""
    results: dict[str, float] = {}
    quads = benchmark.quadruples
    images = [image for q in quads for image in q.images]
    options = [list(q.captions) for q in quads for _ in q.images]
    sim = scorer.option_scores(images, options).reshape(len(quads), 2, 2)
    kinds = defaultdict(list)
    for i, q in enumerate(quads):
        kinds[q.kind].append(i)
    for kind, index in kinds.items():
        for name, value in scores.winoground(sim[index]).items():
            results[f"winoground/{kind}/{name}"] = value
    for name, value in scores.winoground(sim).items():
        results[f"winoground/all/{name}"] = value
    groups = defaultdict(list)
    for item in benchmark.options:
        groups[(item.family, item.kind, len(item.caption_options))].append(item)
    family_means = defaultdict(list)
    for (family, kind, _), items in groups.items():
        s = scorer.option_scores([it.image for it in items], [it.caption_options for it in items])
        accuracy = scores.option_accuracy(s, [it.true_index for it in items])
        results[f"{family}/{kind}"] = accuracy
        family_means[family].append(accuracy)
    for family, values in family_means.items():
        results[f"{family}/mean"] = float(np.mean(values))
    return results


def _class_embeddings(encoder, prompts_per_class: list[list[str]]) -> torch.Tensor:
    """Prompt ensembling (Radford et al. 2021): the normalised mean of each class's prompt embeddings."""
    flat = [p for prompts in prompts_per_class for p in prompts]
    embeds = encoder.encode_text(encoder.tokenize(flat), normalize=True)
    per_class = embeds.view(len(prompts_per_class), -1, embeds.shape[-1]).mean(1)
    return torch.nn.functional.normalize(per_class, dim=-1)


@torch.no_grad()
def retention(encoder, data: RetentionSet) -> dict[str, float]:
    """Zero-shot shape and colour accuracy (prompt ensembles over the other attribute) and
    image→text / text→image recall@1 and @5."""
    from .student import pixels

    images = encoder.encode_image(pixels(data.single_images), normalize=True)
    shapes = _class_embeddings(encoder, [[caption([(s, c, "centre", "small")], with_position=False) for c in COLOURS]
                                         for s in BASE_SHAPES])
    colours = _class_embeddings(encoder, [[caption([(s, c, "centre", "small")], with_position=False)
                                           for s in BASE_SHAPES] for c in COLOURS])
    results = {
        "zero_shot/shape": scores.zero_shot_accuracy((images @ shapes.T).numpy(), data.single_shapes, BASE_SHAPES),
        "zero_shot/colour": scores.zero_shot_accuracy((images @ colours.T).numpy(), data.single_colours,
                                                      list(COLOURS)),
    }
    sim = encoder.similarity(data.pair_images, data.pair_captions)
    for k in (1, 5):
        results[f"retrieval/image_to_text@{k}"] = scores.recall_at_k(sim, data.pair_captions, data.pair_captions, k)
        results[f"retrieval/text_to_image@{k}"] = scores.recall_at_k(sim.T, data.pair_captions, data.pair_captions, k)
    return results


__all__ = ["compositional", "retention"]
