"""Dense local contrastive loss of IDEAL (Basak et al., ICASSP 2023), InfoNCE over locations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from idealseg.losses.gather import gather_keys, global_mean


class DenseContrastiveLoss(nn.Module):
    """For each query location u the positive is the key at its corresponding location u'; the
    negatives are the keys at all other locations of the same slice and of every other slice in
    the batch. Computed as one [B*L, B*L] matrix product, symmetrised (q and k swapped).

    Args:
        temperature: tau > 0 (default 0.1).
        symmetric: also compute the loss with keys as queries and average the two.

    Shapes:
        q, k: [B, D, S, S], L2-normalised along D (as `DenseProjectionHead` returns).
        index_qk: [B, S*S] long, flat location in k of each location of q; valid_qk: [B, S*S] bool.
        index_kq, valid_kq: the same from k to q (needed when symmetric).
        returns: scalar loss; 0 (with a graph) if no location has a counterpart (on any rank).

    Example:
        >>> loss = DenseContrastiveLoss(0.1)
        >>> idx, ok = correspondence(theta_q, theta_k, 16)
        >>> idx2, ok2 = correspondence(theta_k, theta_q, 16)
        >>> loss(zq, zk, idx, ok, idx2, ok2)
    """

    def __init__(self, temperature: float = 0.1, symmetric: bool = True):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 (got {temperature}); the paper uses 0.1")
        self.temperature = temperature
        self.symmetric = symmetric

    def one_way(self, q, k, index, valid):
        """The loss with q as queries and k as keys only (a MoCo key encoder uses this).

        Under torchrun the keys of every rank are the negatives (`losses.gather`), so the loss and
        its gradients are one process's on the global batch."""
        b, d, s, _ = q.shape
        length = s * s
        q = q.flatten(2).transpose(1, 2).reshape(b * length, d)  # [B*L, D]
        k = k.flatten(2).transpose(1, 2).reshape(b * length, d)  # [B*L, D]
        keys, offset = gather_keys(k)  # [world*B*L, D]
        target = (index + torch.arange(b, device=index.device)[:, None] * length).flatten() + offset  # [B*L]
        keep = valid.flatten().float()  # a weight, not a boolean index: indexing waits for the device
        with torch.autocast(q.device.type, enabled=False):  # temperature 0.1 needs float32 logits
            logits = q.float() @ keys.float().T / self.temperature  # [B*L, world*B*L]
        ce = (F.cross_entropy(logits, target, reduction="none") * keep).sum()
        return global_mean(ce + (q.sum() + k.sum()) * 0.0, keep.sum())

    def forward(self, q, k, index_qk, valid_qk, index_kq=None, valid_kq=None):
        loss = self.one_way(q, k, index_qk, valid_qk)
        if self.symmetric:
            if index_kq is None or valid_kq is None:
                raise ValueError("symmetric loss needs the k->q correspondence (index_kq, valid_kq)")
            loss = 0.5 * (loss + self.one_way(k, q, index_kq, valid_kq))
        return loss
