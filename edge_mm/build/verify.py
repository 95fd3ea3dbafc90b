"""Numbers that say a build is right: traced vs eager, batch vs single, int8 vs fp32."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Forward = Callable[..., torch.Tensor]
Batch = tuple[torch.Tensor, ...]


@torch.inference_mode()
def max_abs_diff(a: Forward, b: Forward, batches: Sequence[Batch]) -> float:
    """Largest |a(x) - b(x)| over all batches, counting only real (unpadded) positions."""
    worst = 0.0
    for batch in batches:
        ya, yb = a(*batch), b(*batch)
        diff = (ya.float() - yb.float()).abs()
        if diff.dim() == 3 and len(batch) > 1:  # per-token outputs: ignore padding
            diff = diff * batch[1].unsqueeze(-1)
        worst = max(worst, float(diff.max()))
    return worst


@torch.inference_mode()
def batch_vs_single(forward: Forward, batch: Batch) -> float:
    """Largest difference between an item run in a padded batch and the same item run alone."""
    ids, mask = batch[0], batch[1]
    full = forward(*batch).float()
    worst = 0.0
    for i in range(ids.shape[0]):
        n = int(mask[i].sum())
        alone = forward(ids[i : i + 1, :n], mask[i : i + 1, :n]).float()
        ref = full[i : i + 1, :n] if full.dim() == 3 else full[i : i + 1]
        worst = max(worst, float((alone - ref).abs().max()))
    return worst


def cosine_figures(ref: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    """Mean and min cosine between rows of (n, dim) embeddings."""
    cos = torch.nn.functional.cosine_similarity(ref.float(), test.float(), dim=-1)
    return {"mean_cosine": round(float(cos.mean()), 5), "min_cosine": round(float(cos.min()), 5)}


def classifier_misses(figures: dict[str, float], min_top1: float, max_prob_diff: float) -> list[str]:
    """[why] when classifier ``figures`` miss the targets (top-1 agreement, largest probability difference), else []."""
    if figures["top1_agreement"] >= min_top1 and figures["max_prob_diff"] <= max_prob_diff:
        return []
    return [f"{figures} misses top-1 >= {min_top1}, prob diff <= {max_prob_diff}"]


def classifier_figures(ref_logits: torch.Tensor, test_logits: torch.Tensor) -> dict[str, float]:
    """Top-1 agreement and largest probability difference over rows of (n, classes) logits."""
    p_ref, p_test = ref_logits.float().softmax(-1), test_logits.float().softmax(-1)
    agree = (p_ref.argmax(-1) == p_test.argmax(-1)).float().mean()
    return {"top1_agreement": round(float(agree), 5), "max_prob_diff": round(float((p_ref - p_test).abs().max()), 5)}
