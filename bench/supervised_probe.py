#!/usr/bin/env python3
"""Can a benchmark's classes be learnt at all? Its ViT (or a small CNN) trained with the labels.

    python3 bench/supervised_probe.py --shards DIR --like EMBEDDINGS.h5 --out SUPERVISED.h5 \
        [--model vit|cnn] [--steps 3000] [--batch 32] [--lr 2e-3] [--warmup 60] \
        [--weight-decay 0.05] [--depth 3] [--width 192] [--heads 3] [--tubelet 2,16,16] \
        [--stem linear|hmlp] [--init xavier|normal] [--pooling cls|mean] \
        [--train-modalities xray,ultrasound,endoscopy,ct] \
        [--crop-scale 0.6,1.0] [--rotation 0] [--jitter 0] [--shuffle-labels] [--seed 0] \
        [--threads 2] [--log-every 200]

A self-supervised run that retrieves at chance says nothing by itself: either the objective did not
learn, or the classes cannot be learnt from these data at this size, resolution and length. This
trains an encoder with the labels instead: by cross-entropy of a linear classifier on its
embedding, on the shards' train rows of `--train-modalities`, from a random initialisation.
`--model vit` is the benchmark's ViT (tests/model/golden_reference.py's, which the golden test
holds equal to m3ret's: tubelet patches, 3-D sin-cos positions, CLS token, pre-norm blocks;
embedding = its CLS token or `--pooling mean`; `--stem hmlp` is `model.stem = "hmlp"`),
initialised as m3ret initialises it (`--init xavier`: Xavier-uniform weight matrices, MAE's
choice) or as timm's ViT (`--init normal`: trunc-normal 0.02, which learns more slowly here);
`--model cnn` a small CNN (`--depth` + 2, at most 5, strided 3x3 convolutions with GroupNorm and
GELU, on every frame or slice alone, averaged over them and over the image) that sees every
pixel's neighbours instead of 16-px patches. Views:
random resized crop of `--crop-scale` of the area, horizontal flip, rotation by up to
±`--rotation` degrees and, with `--jitter S`, brightness and contrast scaled by [1-S, 1+S] with
probability 0.8 (SimDINO's global views use 0.4; it slows supervised learning here); a video's
clip starts at a random stored frame per batch. AdamW, linear warm-up then cosine decay (at the
benchmark's 5e-4 on its four modalities neither model moved off the uniform guess: the CNN in 400
steps, the ViT in 1000 with SimDINO's jitter; 2e-3 is the default). Each batch holds one modality,
drawn in proportion to its train rows.

It then embeds the rows of `--like` (an m3ret embeddings file over the same shards, e.g. a demo
folder's `embeddings-raw-pixels.h5`; videos by their centre clip, as `m3ret embed` does) and
writes them, in its row order with its ids, labels and attributes, to `--out` as the encoder
`supervised`. `m3ret eval --embeddings OUT --baseline ...` then reports its recall with chance
levels and intervals next to the demo's encoders. `--shuffle-labels` permutes the labels among the
training patients first (a control: the classifier must then read chance).

Prints the training loss every `--log-every` steps and the classifier's accuracy per modality on the
rows of `--like`. Exit codes: 0 done, 2 bad input (the reason names the file or the option).
"""
import argparse
import json
import math
import os
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "model"))
import golden_reference as ref  # noqa: E402  (the encoder, written independently of m3ret)
import linear_probe  # noqa: E402  (fail, text, the embeddings format)

linear_probe.PROGRAM = "supervised_probe"
fail, text = linear_probe.fail, linear_probe.text


def pair(value, option, kind=float):
    try:
        parts = [kind(v) for v in value.split(",")]
    except ValueError:
        fail(f"{option} '{value}' is not a comma-separated list of numbers")
    return parts


def read_shards(folder):
    """{modality: dict(pixels uint8 [n, C, T, H, W], ids, labels, groups, splits, clip)}."""
    index_path = os.path.join(folder, "index.json")
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read '{index_path}': {e}")
    if index.get("format") != "m3ret-shards" or not isinstance(index.get("modalities"), dict):
        fail(f"'{index_path}' is not an m3ret shard index (format {index.get('format')!r})")
    out = {}
    for modality, info in index["modalities"].items():
        parts = {k: [] for k in ("pixels", "ids", "labels", "groups", "splits")}
        clip = None
        for shard in info["shards"]:
            path = os.path.join(folder, shard["file"])
            try:
                with h5py.File(path, "r") as f:
                    parts["pixels"].append(f["pixels"][:])
                    for key in ("ids", "labels", "groups", "splits"):
                        parts[key].extend(text(x) for x in f[key][:])
                    clip = [int(v) for v in f.attrs["clip"]]
            except (OSError, KeyError) as e:
                fail(f"cannot read shard '{path}': {e}")
        if parts["pixels"]:
            data = {k: np.array(v) for k, v in parts.items() if k != "pixels"}
            data["pixels"] = np.concatenate(parts["pixels"])
            data["clip"] = clip  # [frames of a clip, stride between them]
            out[modality] = data
    return out


def read_like(path):
    """The row columns and attributes of an m3ret embeddings file."""
    try:
        with h5py.File(path, "r") as f:
            if text(f.attrs.get("format", "")) != linear_probe.FORMAT:
                fail(f"'{path}' is not an m3ret embeddings file")
            for key in ("ids", "labels", "groups", "modality"):
                if key not in f:
                    fail(f"'{path}' has no dataset '{key}'")
            keys = ("ids", "labels", "groups", "modality", "splits", "sources")
            return {k: f[k][:] for k in keys if k in f}, dict(f.attrs)
    except (OSError, KeyError) as e:
        fail(f"cannot read '{path}': {e}")


def clip_frames(stored, clip, start):
    """Frame indices of the clip of clip[0] frames at stride clip[1] from `start`."""
    frames, stride = clip
    if stored == frames:
        return list(range(stored))
    return [start + i * stride for i in range(frames)]


def centre_start(stored, clip):
    frames, stride = clip
    starts = stored - (frames - 1) * stride
    return max((starts - 1) // 2, 0)


def augment(x, gen, crop_scale, rotation, jitter):
    """SimDINO-like global views of a batch x [B, C, T, H, W] in [0, 1], per sample."""
    B, C, T, H, W = x.shape
    u = lambda n=1: torch.rand(n, generator=gen)  # noqa: E731
    theta = torch.zeros(B, 2, 3)
    for b in range(B):
        area = crop_scale[0] + (crop_scale[1] - crop_scale[0]) * float(u())
        aspect = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * float(u()))
        sw, sh = min(math.sqrt(area * aspect), 1.0), min(math.sqrt(area / aspect), 1.0)
        tx, ty = (1 - sw) * (2 * float(u()) - 1), (1 - sh) * (2 * float(u()) - 1)
        angle = math.radians(rotation * (2 * float(u()) - 1))
        flip = -1.0 if float(u()) < 0.5 else 1.0
        c, s = math.cos(angle), math.sin(angle)
        # output grid -> input: flip, rotate, then scale into the crop box and move it
        theta[b] = torch.tensor([[sw * c * flip, -sw * s, tx], [sh * s * flip, sh * c, ty]])
    grid = F.affine_grid(theta, (B, C * T, H, W), align_corners=False)
    y = F.grid_sample(x.reshape(B, C * T, H, W), grid, mode="bilinear", padding_mode="zeros",
                      align_corners=False).reshape(B, C, T, H, W)
    if jitter == 0:
        return y
    brightness = 1 + jitter * (2 * u(B) - 1)
    contrast = 1 + jitter * (2 * u(B) - 1)
    mean = y.mean(dim=(1, 2, 3, 4), keepdim=True)
    shaped = lambda v: v.view(B, 1, 1, 1, 1)  # noqa: E731
    jittered = ((y - mean) * shaped(contrast) + mean) * shaped(brightness)
    return torch.where(shaped(u(B) < 0.8), jittered, y).clamp(0, 1)


def init_weights(width, depth, tubelet, stem, gen, init):
    """timm-named ViT weights as timm's ViT (`normal`: trunc-normal 0.02) or MAE and m3ret
    (`xavier`: Xavier-uniform on every weight matrix, a convolution's kernel flattened) initialise
    them; the CLS token trunc-normal 0.02, LayerNorm 1/0."""
    t, ph, pw = tubelet

    def weight(*shape):
        # Drawn from `gen` with either init, so that the views drawn after it are the same.
        w = (torch.randn(*shape, generator=gen) * 0.02).clamp(-0.04, 0.04)
        if init == "xavier" and shape[:2] != (1, 1):  # every weight but the CLS token
            torch.nn.init.xavier_uniform_(w.view(shape[0], -1))  # a kernel as a flat matrix
        return w

    P = {"cls_token": weight(1, 1, width), "norm.weight": torch.ones(width),
         "norm.bias": torch.zeros(width)}
    if stem == "linear":
        P["patch_embed.proj.weight"] = weight(width, 3, t, ph, pw)
        P["patch_embed.proj.bias"] = torch.zeros(width)
    else:  # golden_reference.hmlp_stem: convolutions 0, 3, 6 and LayerNorms 1, 4, 7
        quarter = width // 4
        for i, shape in ((0, (quarter, 3, t, ph // 4, pw // 4)), (3, (quarter, quarter, 1, 2, 2)),
                         (6, (width, quarter, 1, 2, 2))):
            P["patch_embed.proj.%d.weight" % i] = weight(*shape)
            P["patch_embed.proj.%d.bias" % i] = torch.zeros(shape[0])
        for i, channels in ((1, quarter), (4, quarter), (7, width)):
            P["patch_embed.proj.%d.weight" % i] = torch.ones(channels)
            P["patch_embed.proj.%d.bias" % i] = torch.zeros(channels)
    for i in range(depth):
        pre = "blocks.%d." % i
        for norm in ("norm1", "norm2"):
            P[pre + norm + ".weight"] = torch.ones(width)
            P[pre + norm + ".bias"] = torch.zeros(width)
        for name, rows, cols in (("attn.qkv", 3 * width, width), ("attn.proj", width, width),
                                 ("mlp.fc1", 4 * width, width), ("mlp.fc2", width, 4 * width)):
            P[pre + name + ".weight"] = weight(rows, cols)
            P[pre + name + ".bias"] = torch.zeros(rows)
    return P


def make_encoder(a, tubelet, gen):
    """(embed: x [B, C, T, H, W] in [0, 1] -> [B, width], {name: trainable tensor})."""
    torch.manual_seed(a.seed)  # torch.nn.init and the CNN's layers draw from it
    if a.model == "vit":
        P = init_weights(a.width, a.depth, tubelet, a.stem, gen, a.init)
        for v in P.values():
            v.requires_grad_(True)
        meta = {"heads": a.heads, "depth": a.depth, "tubelet": json.dumps(tubelet),
                # the objective parts of the reference model, unused here
                "decoder_heads": 1, "decoder_depth": 0, "eps": 0.05, "gamma": "auto",
                "coeff": 1.0, "expa_type": 0}
        model = ref.Model(P, meta)

        def embed(x):
            tokens = model.forward(x)
            return tokens[:, 1:].mean(1) if a.pooling == "mean" else tokens[:, 0]
        return embed, P
    # A small CNN on every frame (slice) alone, its features averaged over frames: a reference
    # for what labels teach a network that sees every pixel's neighbours, not 16-px patches.
    layers, channels = [], 3
    for i, width in enumerate([32, 64, 128, a.width, a.width][:max(a.depth, 1) + 2]):
        layers += [torch.nn.Conv2d(channels, width, 3, stride=2, padding=1),
                   torch.nn.GroupNorm(8 if width % 8 == 0 else 1, width), torch.nn.GELU()]
        channels = width
    layers += [torch.nn.Conv2d(channels, a.width, 1)]
    net = torch.nn.Sequential(*layers)

    def embed(x):
        B, C, T = x.shape[:3]
        frames = (x.expand(B, 3, *x.shape[2:]) if C == 1 else x) * 2.0 - 1.0
        frames = frames.transpose(1, 2).reshape(B * T, 3, *x.shape[3:])
        return net(frames).mean(dim=(2, 3)).reshape(B, T, -1).mean(1)
    return embed, dict(net.named_parameters())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shards", required=True)
    p.add_argument("--like", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--model", choices=["vit", "cnn"], default="vit")
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--tubelet", default="2,16,16")
    p.add_argument("--stem", choices=["linear", "hmlp"], default="linear")
    p.add_argument("--init", choices=["xavier", "normal"], default="xavier")
    p.add_argument("--pooling", choices=["cls", "mean"], default="cls")
    p.add_argument("--train-modalities", default="xray,ultrasound,endoscopy,ct")
    p.add_argument("--crop-scale", default="0.6,1.0")
    p.add_argument("--rotation", type=float, default=0.0)
    p.add_argument("--jitter", type=float, default=0.0)
    p.add_argument("--shuffle-labels", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=200)
    a = p.parse_args()
    tubelet = pair(a.tubelet, "--tubelet", int)
    crop_scale = pair(a.crop_scale, "--crop-scale")
    if len(tubelet) != 3 or min(tubelet) < 1:
        fail(f"--tubelet '{a.tubelet}' must be three positive integers (frames, height, width)")
    if a.stem == "hmlp" and (tubelet[1] % 4 or tubelet[2] % 4 or a.width % 4):
        fail(f"--stem hmlp needs patch sides (--tubelet '{a.tubelet}') and a --width that are "
             "multiples of 4")
    if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        fail(f"--crop-scale '{a.crop_scale}' must be two fractions 0 < lo <= hi <= 1")
    if a.steps < 1 or a.batch < 1 or a.warmup < 0 or a.width % a.heads or a.width % 6:
        fail("--steps and --batch must be positive, --warmup not negative, and --width a "
             "multiple of --heads and of 6 (the 3-D positions)")
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)

    shards = read_shards(a.shards)
    train_modalities = [m for m in a.train_modalities.split(",") if m]
    for m in train_modalities:
        if m not in shards:
            fail(f"--train-modalities names '{m}', which '{a.shards}' has no shards of "
                 f"(it has {', '.join(sorted(shards))})")
    rows = {m: np.flatnonzero((shards[m]["splits"] == "train") & (shards[m]["labels"] != ""))
            for m in train_modalities}
    classes = sorted({lab for m in train_modalities for lab in shards[m]["labels"][rows[m]]})
    several = [c for c in classes if "|" in c]  # m3ret joins a row's labels with '|'
    if several:
        fail(f"'{a.shards}' has train rows with several labels ('{several[0]}'); this probe "
             "trains one label per row")
    if len(classes) < 2:
        fail(f"'{a.shards}' has fewer than two labels among the train rows of {train_modalities}")
    targets = {}
    for m in train_modalities:
        targets[m] = np.array([classes.index(lab) for lab in shards[m]["labels"][rows[m]]])
    if a.shuffle_labels:  # one label per patient, permuted among the training patients
        patients = sorted({(m, g) for m in train_modalities for g in shards[m]["groups"][rows[m]]})
        first = {}
        for m in train_modalities:
            for g, y in zip(shards[m]["groups"][rows[m]], targets[m]):
                first.setdefault((m, g), y)
        permuted = dict(zip(patients, rng.permutation([first[k] for k in patients])))
        for m in train_modalities:
            targets[m] = np.array([permuted[(m, g)] for g in shards[m]["groups"][rows[m]]])

    folder = os.path.dirname(os.path.abspath(a.out))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        fail(f"--out '{a.out}': the folder '{folder}' does not exist or is not writable")
    columns, attrs = read_like(a.like)
    where = {(m, text(i)): j for m in shards for j, i in enumerate(shards[m]["ids"])}
    modality = [text(x) for x in columns["modality"]]
    ids = [text(x) for x in columns["ids"]]
    for r, m in enumerate(modality):
        if (m, ids[r]) not in where:
            fail(f"'{a.like}' has row '{ids[r]}' ({m}), which '{a.shards}' does not hold")

    embed, params = make_encoder(a, tubelet, gen)
    params["classifier.weight"] = torch.zeros(len(classes), a.width, requires_grad=True)
    params["classifier.bias"] = torch.zeros(len(classes), requires_grad=True)
    decay = [v for k, v in params.items() if v.dim() > 1 and k != "cls_token"]
    rest = [v for k, v in params.items() if not (v.dim() > 1 and k != "cls_token")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=a.lr)
    classify = lambda e: F.linear(e, params["classifier.weight"], params["classifier.bias"])  # noqa

    def batch_pixels(m, idx, start):
        px = shards[m]["pixels"][idx]
        frames = clip_frames(px.shape[2], shards[m]["clip"], start)
        return torch.from_numpy(px[:, :, frames].astype(np.float32) / 255.0)

    weights = np.array([len(rows[m]) for m in train_modalities], dtype=float)
    began, running = time.time(), []
    for step in range(a.steps):
        lr = a.lr * (step + 1) / a.warmup if step < a.warmup else \
            0.5 * a.lr * (1 + math.cos(math.pi * (step - a.warmup) / max(a.steps - a.warmup, 1)))
        for group in opt.param_groups:
            group["lr"] = lr
        k = rng.choice(len(train_modalities), p=weights / weights.sum())
        m = train_modalities[k]
        pick = rng.integers(0, len(rows[m]), a.batch)
        stored = shards[m]["pixels"].shape[2]
        starts = stored - (shards[m]["clip"][0] - 1) * shards[m]["clip"][1]
        x = batch_pixels(m, rows[m][pick], int(rng.integers(0, max(starts, 1))))
        logits = classify(embed(augment(x, gen, crop_scale, a.rotation, a.jitter)))
        loss = F.cross_entropy(logits, torch.from_numpy(targets[m][pick]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        running.append(float(loss))
        if (step + 1) % a.log_every == 0 or step + 1 == a.steps:
            print(f"step {step + 1}: loss {np.mean(running):.4f} ({time.time() - began:.0f} s)",
                  flush=True)
            running = []

    out = np.zeros((len(ids), a.width), dtype=np.float32)
    hits = {}
    with torch.no_grad():
        for m in dict.fromkeys(modality):
            mine = [r for r, mm in enumerate(modality) if mm == m]
            idx = np.array([where[(m, ids[r])] for r in mine])
            stored = shards[m]["pixels"].shape[2]
            start = centre_start(stored, shards[m]["clip"])
            for lo in range(0, len(idx), 64):
                e = embed(batch_pixels(m, idx[lo:lo + 64], start))
                out[mine[lo:lo + 64]] = e.numpy()
                guess = classify(e).argmax(1)
                for r, g in zip(mine[lo:lo + 64], guess.tolist()):
                    hits.setdefault(m, []).append(classes[g] == text(columns["labels"][r]))
    print("classifier accuracy on the rows of --like (chance about 1/%d): %s" % (
        len(classes), ", ".join(f"{m} {np.mean(h):.3f}" for m, h in hits.items())))

    try:
        write_embeddings(a, out, columns, attrs, train_modalities)
    except OSError as e:
        fail(f"cannot write '{a.out}': {e}")
    print(f"wrote {a.out} ({len(ids)} rows, {time.time() - began:.0f} s)")


def write_embeddings(a, out, columns, attrs, train_modalities):
    """`out` as an m3ret embeddings file with --like's columns and attributes."""
    with h5py.File(a.out, "w") as f:
        f["embeddings"] = out
        for k, v in columns.items():
            f[k] = v
        for k, v in attrs.items():
            f.attrs[k] = v
        f.attrs["dim"] = np.int64(a.width)
        f.attrs["encoder"] = "supervised"
        f.attrs["checkpoint"] = ""
        f.attrs["step"] = np.int64(a.steps)
        f.attrs["random_init"] = np.int64(0)
        f.attrs["weights"] = ""
        f.attrs["pooling"] = a.pooling if a.model == "vit" else "mean"
        f.attrs["train_modalities"] = "|".join(train_modalities)


if __name__ == "__main__":
    main()
