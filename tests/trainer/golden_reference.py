#!/usr/bin/env python3
"""Independent PyTorch reference for the trainer's golden test.

Builds the same inputs as tests/trainer/golden_test.cc from closed-form
formulas, computes (1) SimDINO's coding rate R_eps and its gradient and (2) the
MAE loss (as in the official MAE forward_loss, norm_pix_loss=True) and its
gradient w.r.t. the prediction, and prints them as JSON on stdout.
"""
import json
import math

import torch


def coding_rate_inputs(b=6, d=5):
    z = torch.tensor([[math.sin(1.3 * i + 0.7 * j + 0.1) for j in range(d)] for i in range(b)],
                     dtype=torch.float64)
    return z


def coding_rate(z, eps):
    b, d = z.shape
    return 0.5 * torch.logdet(torch.eye(d, dtype=torch.float64) + d / (b * eps) * z.T @ z)


def mae_inputs(B=2, N=4, P=6):
    k = torch.arange(B * N * P, dtype=torch.float32).reshape(B, N, P)
    pred = torch.cos(0.3 * k)
    target = torch.sin(0.5 * k) + 0.1 * k
    mask = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0]], dtype=torch.float32)
    return pred, target, mask


def mae_forward_loss(pred, target, mask):
    # MAE (facebookresearch/mae, models_mae.py) with norm_pix_loss=True.
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    target = (target - mean) / (var + 1.e-6) ** .5
    loss = (pred - target) ** 2
    loss = loss.mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


def main():
    z = coding_rate_inputs().requires_grad_(True)
    r = coding_rate(z, 0.05)
    r.backward()
    pred, target, mask = mae_inputs()
    pred.requires_grad_(True)
    loss = mae_forward_loss(pred, target, mask)
    loss.backward()
    print(json.dumps({
        "torch_version": torch.__version__,
        "coding_rate": r.item(),
        "coding_rate_grad": z.grad.flatten().tolist(),
        "mae_loss": loss.item(),
        "mae_grad": pred.grad.flatten().tolist(),
    }))


if __name__ == "__main__":
    main()
