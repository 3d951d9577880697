"""One record per component: what the registry builds from a name and its parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longtail.strategies.registry import make_loss


def test_ldam_drw_from_the_registry_scales_by_30_and_defers_reweighting():
    counts = [500, 100, 20, 5]
    loss = make_loss("ldam_drw", counts, total_epochs=10)
    assert loss.s == 30.0 and loss.drw_epoch == 8  # the paper's s, on a cosine head
    logits = torch.tensor([[1.0, 0.5, -0.2, 0.1], [0.3, 0.2, 0.9, -1.0]])
    y = torch.tensor([3, 2])
    m = 1 / np.power(np.array(counts, float), 0.25)
    m = torch.tensor(m * 0.5 / m.max(), dtype=torch.float32)
    z = 30 * (logits - F.one_hot(y, 4) * m[y][:, None])
    for epoch, weighted in ((7, False), (8, True)):
        loss.set_epoch(epoch)
        beta = 0.9999
        w = (1 - beta) / (1 - beta ** np.array(counts, float))
        w = torch.tensor(w * 4 / w.sum(), dtype=torch.float32)
        expected = F.cross_entropy(z, y, weight=w if weighted else None)
        torch.testing.assert_close(loss(logits, y), expected)


def test_weighted_ce_by_scheme_with_an_empty_class():
    loss = make_loss("weighted_ce", [8, 0, 2])
    w = np.array([1 / 8, 0, 1 / 2])
    torch.testing.assert_close(loss.weight, torch.tensor(w * 3 / w.sum(), dtype=torch.float32))
    smooth = make_loss("weighted_ce", [8, 2], scheme="smooth_inverse", alpha=2)
    w = np.array([1 / 10, 1 / 4])
    torch.testing.assert_close(smooth.weight, torch.tensor(w * 2 / w.sum(), dtype=torch.float32))
    with pytest.raises(ValueError, match="would be ignored"):
        make_loss("weighted_ce", [8, 2], alpha=2)
