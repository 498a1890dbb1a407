#!/usr/bin/env python3
"""PyTorch-Python eager side of the GPU benchmark, and the FLOP count of both.

The same model as m3ret's ViT + MAE (model/vit.h, model/mae.h): an image
repeated to 2 frames, Conv3d tubelet (2, 16, 16) stem, fixed sin-cos position
embedding, CLS token, pre-norm blocks (LayerNorm eps 1e-6, exact GELU,
scaled_dot_product_attention), random per-sample mask of the tokens, MAE
decoder (512 wide, 8 blocks, 16 heads) predicting every patch, per-patch
normalised MSE on the masked ones, AdamW (betas 0.9/0.95, weight decay 0.05),
gradient clipping at 3.0. bf16 autocast around forward and loss.

usage:
  mae_eager.py bench --device cuda --precision bf16 --batch 256 --size 224 --steps 20
  mae_eager.py flops --preset base --size 224 --mask 0.75   # FLOPs per training image
Prints one JSON line.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12),
           "large": (1024, 24, 16), "huge": (1280, 32, 16)}
TUBE, PATCH, DEC_W, DEC_D, DEC_H = 2, 16, 512, 8, 16


def sincos_1d(pos, dim):
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 10000.0 ** -omega
    out = pos.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([out.sin(), out.cos()], 1).float()


def sincos_3d(t, h, w, dim):
    dh = 2 * (dim // 6)
    dt = dim - 2 * dh
    et, eh, ew = sincos_1d(torch.arange(t), dt), sincos_1d(torch.arange(h), dh), sincos_1d(torch.arange(w), dh)
    return torch.cat([et.reshape(t, 1, 1, dt).expand(t, h, w, dt),
                      eh.reshape(1, h, 1, dh).expand(t, h, w, dh),
                      ew.reshape(1, 1, w, dh).expand(t, h, w, dh)], 3).reshape(t * h * w, dim)


def attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):  # PyTorch >= 2.0 (flash / memory-efficient)
        return F.scaled_dot_product_attention(q, k, v)
    return (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1) @ v


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        B, N, D = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        o = attention(qkv[0], qkv[1], qkv[2])
        x = x + self.proj(o.transpose(1, 2).reshape(B, N, D))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Mae(nn.Module):
    def __init__(self, width, depth, heads, size):
        super().__init__()
        self.g = size // PATCH
        self.patch = nn.Conv3d(3, width, (TUBE, PATCH, PATCH), stride=(TUBE, PATCH, PATCH))
        self.cls = nn.Parameter(torch.zeros(1, 1, width).normal_(0, 0.02))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.dec_embed = nn.Linear(width, DEC_W)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, DEC_W).normal_(0, 0.02))
        self.dec_blocks = nn.ModuleList(Block(DEC_W, DEC_H) for _ in range(DEC_D))
        self.dec_norm = nn.LayerNorm(DEC_W, eps=1e-6)
        self.pred = nn.Linear(DEC_W, TUBE * PATCH * PATCH * 3)
        self.register_buffer("pos", sincos_3d(1, self.g, self.g, width), persistent=False)
        self.register_buffer("dec_pos", sincos_3d(1, self.g, self.g, DEC_W), persistent=False)

    def forward(self, view, keep, mask):
        x = view.expand(-1, 3, -1, -1, -1).repeat_interleave(2, 2) * 2.0 - 1.0  # [B, 3, 2, S, S]
        B, N, W = x.shape[0], self.g * self.g, self.cls.shape[-1]
        tokens = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        visible = tokens.gather(1, keep.unsqueeze(-1).expand(-1, -1, W))
        h = torch.cat([self.cls.expand(B, 1, W), visible], 1)
        for b in self.blocks:
            h = b(h)
        h = self.dec_embed(self.norm(h))
        full = self.mask_token.expand(B, N, DEC_W).scatter(1, keep.unsqueeze(-1).expand(-1, -1, DEC_W), h[:, 1:])
        d = torch.cat([h[:, :1], full + self.dec_pos], 1)
        for b in self.dec_blocks:
            d = b(d)
        pred = self.pred(self.dec_norm(d)[:, 1:])
        g = self.g
        target = x.reshape(B, 3, 1, TUBE, g, PATCH, g, PATCH).permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(B, N, -1)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
        per_token = (pred.float() - target).pow(2).mean(-1)
        return (per_token * mask).sum() / mask.sum()


def flops_per_image(preset, size, mask):
    """Training FLOPs per image (3 x the forward's matmuls: forward + backward)."""
    width, depth, _ = PRESETS[preset]
    n_tokens = (size // PATCH) ** 2
    kept = max(1, round(n_tokens * (1 - mask)))
    block = lambda n, d: 24 * n * d * d + 4 * n * n * d
    fwd = 2 * n_tokens * (3 * TUBE * PATCH * PATCH) * width          # stem
    fwd += depth * block(kept + 1, width)                               # encoder, visible + CLS
    fwd += 2 * (kept + 1) * width * DEC_W                               # decoder embed
    fwd += DEC_D * block(n_tokens + 1, DEC_W)                           # decoder, all + CLS
    fwd += 2 * n_tokens * DEC_W * TUBE * PATCH * PATCH * 3              # prediction
    return 3 * fwd


def bench(a):
    dev = torch.device(a.device)
    torch.manual_seed(0)
    width, depth, heads = PRESETS[a.preset]
    model = Mae(width, depth, heads, a.size).to(dev)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.endswith("token") and n != "cls"]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and not n.endswith("token") and n != "cls")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                            lr=1.5e-4, betas=(0.9, 0.95))
    N = (a.size // PATCH) ** 2
    kept = max(1, round(N * (1 - a.mask)))
    view = torch.rand(a.batch, 1, 1, a.size, a.size)
    keep = torch.rand(a.batch, N).argsort(1)[:, :kept].sort(1).values
    mask = torch.ones(a.batch, N).scatter_(1, keep, 0.0)
    if dev.type == "cuda":
        view, keep, mask = view.pin_memory(), keep.pin_memory(), mask.pin_memory()
        torch.cuda.reset_peak_memory_stats(dev)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    t_fb = t_opt = 0.0
    for step in range(a.warmup + a.steps):
        sync()
        t0 = time.perf_counter()
        v, k, m = (t.to(dev, non_blocking=True) for t in (view, keep, mask))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = model(v, k, m)
        loss.backward()
        sync()
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()
        opt.zero_grad(set_to_none=False)
        sync()
        t2 = time.perf_counter()
        if step >= a.warmup:
            t_fb += t1 - t0
            t_opt += t2 - t1
    total = t_fb + t_opt
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    print(json.dumps({"side": "pytorch-eager", "torch": torch.__version__, "device": str(dev),
                      "precision": a.precision, "preset": a.preset, "batch": a.batch, "size": a.size,
                      "mask": a.mask, "steps": a.steps, "loss": float(loss),
                      "images_per_s": a.batch * a.steps / total,
                      "ms_forward_backward": 1e3 * t_fb / a.steps, "ms_optimizer": 1e3 * t_opt / a.steps,
                      "peak_memory_gib": peak}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["bench", "flops"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--preset", default="base", choices=sorted(PRESETS))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--mask", type=float, default=0.75)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    a = p.parse_args()
    if a.mode == "flops":
        print(json.dumps({"flops_per_image": flops_per_image(a.preset, a.size, a.mask)}))
    else:
        bench(a)


if __name__ == "__main__":
    main()
