"""Load an encoder written by `m3ret export` in Python (torch, timm, safetensors).

    import m3ret_encoder as m3
    vit = m3.load_timm("encoder.safetensors", img_size=(224, 224))   # timm VisionTransformer
    enc = m3.load_module("encoder.safetensors")                     # any image, clip or volume
    z = m3.embed(enc, pixels)        # uint8 [B, C, T, H, W] as in the shards -> unit [B, D]
    z = m3.embed_timm(vit, images)   # uint8 [B, C, H, W] -> unit [B, D]

Everything needed to rebuild the encoder is in the file's metadata (written by
`m3ret export`): width, depth, heads, mlp_ratio, layerscale, embedding (cls or
mean), tubelet [t, ph, pw] of the stem, stem_type (`linear`: one Conv3d; `hmlp`: DeiT
III's hierarchical MLP stem over tubelets), the position-embedding layout
(`pos_embed`) and the input scaling (`input`). The encoder sees float pixels
x in [0, 1] (uint8 / 255), C = 1 repeated to 3 channels, a clip with fewer than
t frames has each frame repeated up to t, T, H, W are cut to multiples of the
tubelet, and the pixels are scaled to x * 2 - 1 (mean 0.5, std 0.5).

`load_timm` folds the 3-D stem for one frame: an image repeated over t frames
through Conv3d weights W equals a Conv2d with W summed over t (the linear stem
only: timm's VisionTransformer has no hMLP stem, so use `load_module` for it). Its `pos_embed`
is the fixed sin-cos table of the grid of `img_size` (zeros for the CLS token),
so that model is exact for that size only.

Command line (used by m3ret's tests): python3 m3ret_encoder.py embed WEIGHTS
INPUTS OUT reads uint8 tensors "inputs.<name>" [B, C, T, H, W] from the
safetensors file INPUTS and writes "module.<name>" (and, when T = 1 and the
stem is linear, "timm.<name>") L2-normalised embeddings [B, D] to OUT.
"""
import json
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

FORMAT = "m3ret-encoder"


def read_export(path):
    """(tensors, spec) of an `m3ret export` file; spec has ints, floats and lists."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: metadata format is {meta.get('format')!r}, expected {FORMAT!r}")
    missing = [k for k in ("width", "depth", "heads", "tubelet", "mlp_ratio", "layerscale",
                           "embedding", "pos_embed", "input") if k not in meta]
    if missing:
        raise ValueError(f"{path}: metadata lacks {', '.join(missing)} (exported by an older m3ret?)")
    spec = {
        "width": int(meta["width"]), "depth": int(meta["depth"]), "heads": int(meta["heads"]),
        "tubelet": json.loads(meta["tubelet"]), "mlp_ratio": float(meta["mlp_ratio"]),
        "layerscale": float(meta["layerscale"]), "embedding": meta["embedding"],
        "pos_embed": json.loads(meta["pos_embed"]), "input": json.loads(meta["input"]),
        "stem": meta.get("stem_type", "linear"),  # files exported before the hMLP stem: linear
    }
    if spec["stem"] not in ("linear", "hmlp"):
        raise ValueError(f"{path}: unknown stem_type {spec['stem']!r}")
    if spec["pos_embed"].get("type") != "sincos-3d":
        raise ValueError(f"{path}: unknown pos_embed type {spec['pos_embed'].get('type')!r}")
    tensors = {k: v for k, v in load_file(str(path)).items() if not k.startswith("objective.")}
    return tensors, spec


def sincos_1d(positions, dim):
    """[N] positions -> [N, dim]: [sin(p w_i) | cos(p w_i)], w_i = 10000^(-2i/dim)."""
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 10000.0 ** -omega
    out = positions.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([torch.sin(out), torch.cos(out)], 1).to(torch.float32)


def sincos_3d(grid, dim):
    """Separable table of a (gt, gh, gw) grid: [N, dim], row-major (t, h, w), dims [dt|dh|dw]."""
    gt, gh, gw = grid
    dh = 2 * (dim // 6)
    dt = dim - 2 * dh
    et = sincos_1d(torch.arange(gt), dt).reshape(gt, 1, 1, dt).expand(gt, gh, gw, dt)
    eh = sincos_1d(torch.arange(gh), dh).reshape(1, gh, 1, dh).expand(gt, gh, gw, dh)
    ew = sincos_1d(torch.arange(gw), dh).reshape(1, 1, gw, dh).expand(gt, gh, gw, dh)
    return torch.cat([et, eh, ew], 3).reshape(gt * gh * gw, dim)


def prepare(x, tubelet):
    """float [B, C, T, H, W] in [0, 1] -> [B, 3, T', H', W'] in [-1, 1] (as the encoder does)."""
    t, ph, pw = tubelet
    x = x.to(torch.float32)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1, -1)
    if x.shape[2] < t:
        r = (t + x.shape[2] - 1) // x.shape[2]
        x = x.repeat_interleave(r, 2)[:, :, :t]
    T, H, W = x.shape[2] // t * t, x.shape[3] // ph * ph, x.shape[4] // pw * pw
    return x[:, :, :T, :H, :W] * 2.0 - 1.0


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D // self.heads))
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, layerscale):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)
        self.ls1 = LayerScale(dim) if layerscale > 0 else nn.Identity()
        self.ls2 = LayerScale(dim) if layerscale > 0 else nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class ChannelNorm(nn.Module):
    """LayerNorm over the channels (dim 1) of [B, C, T, H, W] at each position."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        y = F.layer_norm(x.movedim(1, -1), (x.shape[1],), self.weight, self.bias, 1e-6)
        return y.movedim(-1, 1)


class PatchEmbed(nn.Module):
    def __init__(self, dim, tubelet, stem="linear"):
        super().__init__()
        if stem == "linear":
            self.proj = nn.Conv3d(3, dim, tubelet, stride=tubelet)
            return
        t, ph, pw = tubelet
        q = dim // 4
        self.proj = nn.Sequential(
            nn.Conv3d(3, q, (t, ph // 4, pw // 4), stride=(t, ph // 4, pw // 4)), ChannelNorm(q),
            nn.GELU(), nn.Conv3d(q, q, (1, 2, 2), stride=(1, 2, 2)), ChannelNorm(q), nn.GELU(),
            nn.Conv3d(q, dim, (1, 2, 2), stride=(1, 2, 2)), ChannelNorm(dim))


class M3retEncoder(nn.Module):
    """The m3ret encoder for images, clips and volumes: float [B, C, T, H, W] in [0, 1]
    -> tokens [B, 1 + N, D] (forward) or the unnormalised embedding [B, D] (embedding)."""

    def __init__(self, spec):
        super().__init__()
        D = spec["width"]
        self.spec = spec
        self.patch_embed = PatchEmbed(D, spec["tubelet"], spec["stem"])
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        hidden = int(round(D * spec["mlp_ratio"]))
        self.blocks = nn.ModuleList(
            [Block(D, spec["heads"], hidden, spec["layerscale"]) for _ in range(spec["depth"])])
        self.norm = nn.LayerNorm(D, eps=1e-6)

    def forward(self, x):
        x = prepare(x, self.spec["tubelet"])
        t, ph, pw = self.spec["tubelet"]
        grid = (x.shape[2] // t, x.shape[3] // ph, x.shape[4] // pw)
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = tokens + sincos_3d(grid, self.spec["width"]).unsqueeze(0)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], 1)
        for b in self.blocks:
            x = b(x)
        return self.norm(x)

    def embedding(self, x):
        out = self.forward(x)
        return out[:, 1:].mean(1) if self.spec["embedding"] == "mean" else out[:, 0]


def load_module(path):
    """The exported encoder as a plain torch module (eval mode)."""
    tensors, spec = read_export(path)
    model = M3retEncoder(spec)
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def load_timm(path, img_size=(224, 224)):
    """The exported encoder as a timm VisionTransformer for images of img_size (H, W),
    multiples of the patch size; num_classes = 0, so model(x) is the embedding.
    Input: float [B, 3, H, W] normalised with mean = std = 0.5 per channel of x in [0, 1]
    (model.pretrained_cfg['mean'], ['std'])."""
    from timm.models.vision_transformer import VisionTransformer

    tensors, spec = read_export(path)
    if spec["stem"] != "linear":
        raise ValueError(f"{path}: stem_type {spec['stem']!r}: timm's VisionTransformer has no "
                         "such stem; use load_module")
    t, ph, pw = spec["tubelet"]
    H, W = img_size
    if H % ph or W % pw:
        raise ValueError(f"img_size {img_size} is not a multiple of the patch size {ph}x{pw}")
    D = spec["width"]
    model = VisionTransformer(
        img_size=(H, W), patch_size=(ph, pw), in_chans=3, num_classes=0, embed_dim=D,
        depth=spec["depth"], num_heads=spec["heads"], mlp_ratio=spec["mlp_ratio"], qkv_bias=True,
        init_values=spec["layerscale"] if spec["layerscale"] > 0 else None,
        global_pool="avg" if spec["embedding"] == "mean" else "token", fc_norm=False,
        class_token=True, no_embed_class=False)
    state = dict(tensors)
    state["patch_embed.proj.weight"] = tensors["patch_embed.proj.weight"].sum(2)  # fold t
    table = sincos_3d((1, H // ph, W // pw), D)
    state["pos_embed"] = torch.cat([torch.zeros(1, D), table], 0).unsqueeze(0)
    model.load_state_dict(state, strict=True)
    model.pretrained_cfg = dict(getattr(model, "pretrained_cfg", None) or {}, mean=(0.5, 0.5, 0.5),
                                std=(0.5, 0.5, 0.5), input_size=(3, H, W))
    return model.eval()


@torch.no_grad()
def embed(model, pixels):
    """uint8 [B, C, T, H, W] (as stored in shards) -> L2-normalised [B, D], as `m3ret embed`."""
    z = model.embedding(pixels.to(torch.float32) / 255.0)
    return F.normalize(z, dim=1)


@torch.no_grad()
def embed_timm(model, images):
    """uint8 [B, C, H, W] (C = 1 or 3) -> L2-normalised [B, D] through a load_timm model."""
    x = images.to(torch.float32) / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    H, W = model.patch_embed.img_size
    x = x[:, :, :H, :W]
    return F.normalize(model((x - 0.5) / 0.5), dim=1)


def main(argv):
    if len(argv) != 4 or argv[0] != "embed":
        print(__doc__, file=sys.stderr)
        return 2
    weights, inputs, out = argv[1:]
    module = load_module(weights)
    _, spec = read_export(weights)
    results = {}
    for name, x in load_file(inputs).items():
        if not name.startswith("inputs."):
            continue
        key = name[len("inputs."):]
        results["module." + key] = embed(module, x).contiguous()
        if x.shape[2] == 1 and spec["stem"] == "linear":  # images: also through timm
            _, ph, pw = spec["tubelet"]
            size = (x.shape[3] // ph * ph, x.shape[4] // pw * pw)
            vit = load_timm(weights, img_size=size)
            results["timm." + key] = embed_timm(vit, x[:, :, 0]).contiguous()
    save_file(results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
