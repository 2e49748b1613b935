"""Accuracy from model scores: top-k with fair ties, per-class accuracy, confusions, paired comparisons.

Pure NumPy. An int8 softmax is quantized in steps of 1/256, so several classes often share one score;
``topk_hits`` counts a tie as the probability that a random tie-break puts the true class within the top k,
instead of letting class order decide (argsort would favour low class indices).
"""

from __future__ import annotations

import math

import numpy as np

WILSON_Z = 1.959964   # two-sided 95 %


def topk_hits(scores: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Per image, the probability that the true class is among the ``k`` highest scores (ties at random)."""
    scores = np.asarray(scores, dtype=np.float64)
    true = scores[np.arange(len(targets)), targets][:, None]
    greater = np.sum(scores > true, axis=1)
    ties = np.sum(scores == true, axis=1) - 1
    return np.clip((k - greater) / (ties + 1.0), 0.0, 1.0)


def wilson_interval(successes: float, total: int, z: float = WILSON_Z) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (sensible at 0 %, 100 % and small counts)."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(scores: np.ndarray, targets: np.ndarray, class_names: list[str], confusions: int = 5) -> dict:
    """top-1/top-5 (fractions), their 95 % interval, mean per-class accuracy, per-class rows and confusions.

    Args:
        scores: (images, model classes) outputs, probabilities or logits.
        targets: (images,) the true class as a model output index.
        class_names: name of every model output (``str(index)`` when the model carries none).
        confusions: how many of the most frequent (true, predicted) mistakes to list.
    """
    scores, targets = np.asarray(scores), np.asarray(targets, dtype=np.int64)
    count = len(targets)
    k = min(5, scores.shape[1])
    top1 = topk_hits(scores, targets, 1)
    top5 = topk_hits(scores, targets, k)
    predicted = np.argmax(scores, axis=1)
    per_class = []
    for c in np.unique(targets):
        members = targets == c
        per_class.append({"class": class_names[c], "index": int(c), "count": int(members.sum()),
                          "top1": float(top1[members].mean())})
    low, high = wilson_interval(float(top1.sum()), count)
    return {"count": count, "top1": float(top1.mean()), "top1_ci95": [low, high], "top5": float(top5.mean()),
            "top5_k": k, "mean_class_top1": float(np.mean([row["top1"] for row in per_class])),
            "per_class": per_class, "confusions": top_confusions(targets, predicted, class_names, confusions),
            "predictions": predicted.tolist()}


def top_confusions(targets: np.ndarray, predicted: np.ndarray, class_names: list[str],
                   count: int) -> list[dict]:
    """The most frequent (true -> predicted) mistakes, with their share of the true class's images."""
    wrong = targets != predicted
    pairs, frequency = np.unique(np.stack([targets[wrong], predicted[wrong]], axis=1), axis=0,
                                 return_counts=True) \
        if wrong.any() else (np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64))
    order = sorted(range(len(pairs)),
                   key=lambda i: (-frequency[i], int(pairs[i][0]), int(pairs[i][1])))[:count]
    sizes = {int(c): int(n) for c, n in zip(*np.unique(targets, return_counts=True))}
    return [{"true": class_names[int(pairs[i][0])], "predicted": class_names[int(pairs[i][1])],
             "count": int(frequency[i]), "fraction_of_true": float(frequency[i] / sizes[int(pairs[i][0])])}
            for i in order]


def paired(reference: np.ndarray, other: np.ndarray, targets: np.ndarray) -> dict:
    """Top-1 agreement of two models on the same images and the exact McNemar test of their accuracy.

    ``lost`` = images the reference gets right and the other gets wrong; ``gained`` the reverse. The
    p-value says whether the difference in top-1 could be chance (two-sided exact binomial on lost/gained).
    """
    reference, other, targets = map(np.asarray, (reference, other, targets))
    lost = int(np.sum((reference == targets) & (other != targets)))
    gained = int(np.sum((reference != targets) & (other == targets)))
    return {"agreement": float(np.mean(reference == other)), "lost": lost, "gained": gained,
            "mcnemar_p": mcnemar_p(lost, gained)}


def mcnemar_p(lost: int, gained: int) -> float:
    """Two-sided exact McNemar p-value for ``lost`` vs ``gained`` discordant pairs."""
    n = lost + gained
    if n == 0:
        return 1.0
    # exact integer arithmetic: no float overflow for large n
    tail = sum(math.comb(n, i) for i in range(min(lost, gained) + 1)) / 2 ** n
    return min(1.0, 2.0 * tail)
