#!/usr/bin/env python3
"""Independent PyTorch reference for the trainer's golden test.

Builds the same inputs as tests/model/golden_test.cc from closed-form
formulas, computes (1) SimDINO's coding rate R_eps and its gradient, (2) the
MAE loss (as in the official MAE forward_loss, norm_pix_loss=True) and its
gradient w.r.t. the prediction and (3) SimDINO's whole loss for several
settings (written from the method's definition, see mcr_loss), and prints them
as JSON on stdout.

With arguments `model WEIGHTS INPUTS OUT` (all safetensors files written by
golden_test.cc, read here with numpy, not with m3ret's reader) it runs its own
implementation of the encoder (timm-named weights, as `m3ret export` writes
them), the MAE decoder (official MAE unshuffle with ids_restore) and the
SimDINO head and loss, and writes to OUT: the encoder's output tokens, the
three losses and the gradients of every weight under each loss.
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F


def coding_rate_inputs(b=6, d=5):
    z = torch.tensor([[math.sin(1.3 * i + 0.7 * j + 0.1) for j in range(d)] for i in range(b)],
                     dtype=torch.float64)
    return z


def coding_rate(z, eps):
    b, d = z.shape
    return 0.5 * torch.logdet(torch.eye(d, dtype=torch.float64) + d / (b * eps) * z.T @ z)


def mcr_loss(student, teacher, eps, coeff, expa_type, world=1, gamma=None):
    """SimDINO's loss as its reference implementation (MCRLoss) defines it.

    student: [V, m, p] L2-normalised features, the G global views first;
    teacher: [G, m, p]. Compression = mean cosine of teacher view i with
    student view j over all pairs i != j; expansion = mean over the G global
    views of 1/2 logdet(I + p / (m N eps) Z^T Z), Z = the student's global
    view (expa_type 0) or the mean of student and teacher features
    (expa_type 1), times gamma = (p + N m) / (p N m) unless given;
    loss = -coeff * compression - gamma * expansion.
    """
    V, m, p = student.shape
    G = teacher.shape[0]
    sim = (teacher.unsqueeze(1) * student.unsqueeze(0)).sum(-1).mean(-1)  # [G, V]
    off_diagonal = 1.0 - torch.eye(G, V, dtype=sim.dtype)
    comp = (sim * off_diagonal).sum() / (G * V - min(G, V))
    z = student[:G] if expa_type == 0 else (student[:G] + teacher) / 2
    cov = torch.einsum("nbc,nbd->ncd", z.double(), z.double())
    eye = torch.eye(p, dtype=torch.float64)
    expa = sum(0.5 * torch.logdet(eye + p / (m * world * eps) * cov[n]) for n in range(G)) / G
    factor = (p + world * m) / (p * world * m) if gamma is None else gamma
    return -coeff * comp - factor * expa.to(comp.dtype), comp, expa, factor


def simdino_inputs(V=4, G=2, m=6, p=5):
    s = torch.tensor([[[math.sin(0.9 * v + 1.7 * b + 0.45 * c + 0.3) for c in range(p)]
                       for b in range(m)] for v in range(V)], dtype=torch.float64)
    t = torch.tensor([[[math.cos(1.1 * v + 0.6 * b + 0.8 * c) for c in range(p)]
                       for b in range(m)] for v in range(G)], dtype=torch.float64)
    return F.normalize(s, dim=-1), F.normalize(t, dim=-1)


# (name, coeff, expa_type, world, gamma): the cases golden_test.cc checks.
SIMDINO_CASES = [("student_auto_1rank", 1.0, 0, 1, None),
                 ("teacher_auto_2ranks", 1.0, 1, 2, None),
                 ("student_fixed_gamma", 2.0, 0, 1, 0.5)]


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


DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + begin:8 + n + end], dtype=DTYPES[info["dtype"]])
        out[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return out, meta


def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().contiguous().numpy().tobytes()
        dtype = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}[t.dtype]
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def sincos_1d(pos, dim):
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = pos.double()[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], 1).float()


def sincos_3d(gt, gh, gw, dim):
    dh = 2 * (dim // 6)
    dt = dim - 2 * dh
    t, h, w = torch.meshgrid(torch.arange(gt), torch.arange(gh), torch.arange(gw), indexing="ij")
    return torch.cat([sincos_1d(t.flatten(), dt), sincos_1d(h.flatten(), dh),
                      sincos_1d(w.flatten(), dh)], 1)


def hmlp_stem(x, P, tubelet):
    """The hierarchical MLP stem of Touvron et al., "Three things everyone should know about
    Vision Transformers" (ECCV 2022; DeiT III's hMLP_stem), over tubelets: a convolution with
    kernel = stride = (t, ph/4, pw/4) to D/4 channels, norm, GELU; kernel = stride = (1, 2, 2) to
    D/4, norm, GELU; kernel = stride = (1, 2, 2) to D, norm. Kernels never overlap, so each token
    depends on its own tubelet alone, as with one linear patch embedding (what masked training
    needs). The norms are LayerNorms over the channels at each position (the paper's BatchNorm
    would mix the samples of a batch); weights named as DeiT III's nn.Sequential indexes them."""
    t, ph, pw = tubelet

    def conv(y, i, stride):
        return F.conv3d(y, P["patch_embed.proj.%d.weight" % i], P["patch_embed.proj.%d.bias" % i],
                        stride=stride)

    def norm(y, i):
        z = y.movedim(1, -1)
        z = F.layer_norm(z, (z.shape[-1],), P["patch_embed.proj.%d.weight" % i],
                         P["patch_embed.proj.%d.bias" % i], 1e-6)
        return z.movedim(-1, 1)

    y = F.gelu(norm(conv(x, 0, (t, ph // 4, pw // 4)), 1))
    y = F.gelu(norm(conv(y, 3, (1, 2, 2)), 4))
    return norm(conv(y, 6, (1, 2, 2)), 7)


def block(x, P, pre, heads, mlp):
    B, N, D = x.shape
    h = F.layer_norm(x, (D,), P[pre + "norm1.weight"], P[pre + "norm1.bias"], 1e-6)
    qkv = F.linear(h, P[pre + "attn.qkv.weight"], P[pre + "attn.qkv.bias"])
    q, k, v = qkv.reshape(B, N, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
    a = (q @ k.transpose(-2, -1)) * (D // heads) ** -0.5
    o = (a.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, D)
    o = F.linear(o, P[pre + "attn.proj.weight"], P[pre + "attn.proj.bias"])
    if pre + "ls1.gamma" in P:
        o = o * P[pre + "ls1.gamma"]
    x = x + o
    h = F.layer_norm(x, (D,), P[pre + "norm2.weight"], P[pre + "norm2.bias"], 1e-6)
    m = F.linear(F.gelu(F.linear(h, P[pre + mlp + "fc1.weight"], P[pre + mlp + "fc1.bias"])),
                 P[pre + mlp + "fc2.weight"], P[pre + mlp + "fc2.bias"])
    if pre + "ls2.gamma" in P:
        m = m * P[pre + "ls2.gamma"]
    return x + m


class Model:
    def __init__(self, P, meta):
        self.P = P
        self.heads = int(meta["heads"])
        self.depth = int(meta["depth"])
        self.t, self.ph, self.pw = json.loads(meta["tubelet"])
        self.dec_heads = int(meta["decoder_heads"])
        self.dec_depth = int(meta["decoder_depth"])
        self.eps = float(meta["eps"])
        self.gamma = None if meta["gamma"] == "auto" else float(meta["gamma"])
        self.coeff = float(meta["coeff"])
        self.expa_type = int(meta["expa_type"])

    def prepare(self, x):
        B, C, T, H, W = x.shape
        if C == 1:
            x = x.expand(B, 3, T, H, W)
        if T < self.t:
            x = x.repeat_interleave(-(-self.t // T), dim=2)[:, :, :self.t]
        T = x.shape[2] // self.t * self.t
        x = x[:, :, :T, :H // self.ph * self.ph, :W // self.pw * self.pw]
        return x * 2.0 - 1.0

    def patch_tokens(self, x):
        P = self.P
        if "patch_embed.proj.weight" in P:
            y = F.conv3d(x, P["patch_embed.proj.weight"], P["patch_embed.proj.bias"],
                         stride=(self.t, self.ph, self.pw))
        else:
            y = hmlp_stem(x, P, (self.t, self.ph, self.pw))
        gt, gh, gw = y.shape[2:]
        y = y.flatten(2).transpose(1, 2)
        return y + sincos_3d(gt, gh, gw, y.shape[-1])[None], (gt, gh, gw)

    def encode(self, tokens):
        P = self.P
        x = torch.cat([P["cls_token"].expand(tokens.shape[0], -1, -1), tokens], 1)
        for i in range(self.depth):
            x = block(x, P, "blocks.%d." % i, self.heads, "mlp.")
        return F.layer_norm(x, (x.shape[-1],), P["norm.weight"], P["norm.bias"], 1e-6)

    def forward(self, x):
        return self.encode(self.patch_tokens(self.prepare(x))[0])

    def mae_loss(self, x, keep):
        P = self.P
        xp = self.prepare(x)
        tokens, (gt, gh, gw) = self.patch_tokens(xp)
        B, N, D = tokens.shape
        latent = self.encode(torch.gather(tokens, 1, keep[:, :, None].expand(-1, -1, D)))
        # Official MAE decoder: append mask tokens, unshuffle with ids_restore.
        masked = torch.ones(B, N, dtype=torch.bool)
        masked.scatter_(1, keep, False)
        ids_shuffle = torch.stack([torch.cat([keep[b], torch.nonzero(masked[b]).flatten()])
                                   for b in range(B)])
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        y = F.linear(latent, P["decoder.embed.weight"], P["decoder.embed.bias"])
        Dd = y.shape[-1]
        mask_tokens = P["decoder.mask_token"].repeat(B, N - keep.shape[1], 1)
        y_ = torch.cat([y[:, 1:], mask_tokens], 1)
        y_ = torch.gather(y_, 1, ids_restore[:, :, None].repeat(1, 1, Dd))
        y_ = y_ + sincos_3d(gt, gh, gw, Dd)[None]
        y = torch.cat([y[:, :1], y_], 1)
        for i in range(self.dec_depth):
            y = block(y, P, "decoder.blocks.%d." % i, self.dec_heads, "")
        y = F.layer_norm(y, (Dd,), P["decoder.norm.weight"], P["decoder.norm.bias"], 1e-6)
        pred = F.linear(y, P["decoder.pred.weight"], P["decoder.pred.bias"])[:, 1:]
        t, ph, pw = self.t, self.ph, self.pw
        target = xp.reshape(B, 3, gt, t, gh, ph, gw, pw)
        target = torch.einsum("nctuhpwq->nthwupqc", target).reshape(B, N, t * ph * pw * 3)
        return mae_forward_loss(pred, target, masked.float())

    def head(self, x):
        P = self.P
        h = F.gelu(F.linear(x, P["head.fc1.weight"], P["head.fc1.bias"]))
        h = F.gelu(F.linear(h, P["head.fc2.weight"], P["head.fc2.bias"]))
        return F.normalize(F.linear(h, P["head.fc3.weight"], P["head.fc3.bias"]), dim=-1)

    def simdino_loss(self, views, teacher):
        # views: global views first; teacher: [G, B, out] (fixed).
        # Global and local views have different sizes: the compression term
        # pairs them one by one; the expansion term uses the global views.
        student = [self.head(self.forward(v)[:, 0]) for v in views]
        G = teacher.shape[0]
        comp, pairs = 0.0, 0
        for i in range(G):
            for j in range(len(student)):
                if i != j:
                    comp = comp + F.cosine_similarity(teacher[i], student[j], dim=-1).mean()
                    pairs += 1
        comp = comp / pairs
        _, _, expa, gamma = mcr_loss(torch.stack(student[:G]), teacher, self.eps, self.coeff,
                                     self.expa_type)
        return -self.coeff * comp - gamma * expa.float(), comp, expa


def model_mode(weights, inputs, out_path):
    P, meta = load_safetensors(weights)
    I, _ = load_safetensors(inputs)
    for p in P.values():
        p.requires_grad_(True)
    m = Model(P, meta)
    enc_names = [n for n in P if not n.startswith(("decoder.", "head."))]
    out = {}

    def grads(loss, names, tag):
        for n, g in zip(names, torch.autograd.grad(loss, [P[n] for n in names])):
            out[tag + n] = g

    tokens = m.forward(I["enc_x"])
    out["enc.out"] = tokens
    grads((tokens * I["enc_probe"]).sum(), enc_names, "enc.grad.")
    loss = m.mae_loss(I["mae_x"], I["mae_keep"])
    out["mae.loss"] = loss.reshape(1)
    grads(loss, enc_names + [n for n in P if n.startswith("decoder.")], "mae.grad.")
    views = [I["sd_global0"], I["sd_global1"], I["sd_local0"], I["sd_local1"]]
    total, align, rate = m.simdino_loss(views, I["sd_teacher"])
    out["sd.loss"] = total.reshape(1)
    out["sd.align"] = align.reshape(1)
    out["sd.rate"] = rate.reshape(1)
    grads(total, enc_names + [n for n in P if n.startswith("head.")], "sd.grad.")
    save_safetensors(out_path, {k: v.detach() for k, v in out.items()})


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "model":
        model_mode(*sys.argv[2:])
        return
    z = coding_rate_inputs().requires_grad_(True)
    r = coding_rate(z, 0.05)
    r.backward()
    pred, target, mask = mae_inputs()
    pred.requires_grad_(True)
    loss = mae_forward_loss(pred, target, mask)
    loss.backward()
    simdino = {}
    for name, coeff, expa_type, world, gamma in SIMDINO_CASES:
        student, teacher = simdino_inputs()
        student.requires_grad_(True)
        total, comp, expa, factor = mcr_loss(student, teacher, 0.05, coeff, expa_type, world, gamma)
        total.backward()
        simdino[name] = {"loss": total.item(), "align": comp.item(), "rate": expa.item(),
                         "gamma": factor, "grad": student.grad.flatten().tolist()}
    print(json.dumps({
        "simdino": simdino,
        "torch_version": torch.__version__,
        "coding_rate": r.item(),
        "coding_rate_grad": z.grad.flatten().tolist(),
        "mae_loss": loss.item(),
        "mae_grad": pred.grad.flatten().tolist(),
    }))


if __name__ == "__main__":
    main()
