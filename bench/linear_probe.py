#!/usr/bin/env python3
"""Is the class linearly decodable from an encoder's embeddings? A supervised probe.

    python3 bench/linear_probe.py [--split test] [--folds 4] [--ridge 0.1] [--seed 0] \
        [--bootstrap 1000] EMBEDDINGS.h5 [EMBEDDINGS.h5 ...]

Reads m3ret embeddings files (format "m3ret-embeddings": `embeddings`, `labels`, `modality`,
`groups`, `splits`), e.g. the `embeddings-<name>.h5` a demo folder keeps for every encoder of its
comparison. For each file and modality it trains a ridge classifier (one-vs-rest least squares on
standardised features, penalty `ridge` times the number of training rows) on the rows of some
patients and scores the rows of the others (`folds` folds over patients, so no patient is in both
sides), and prints the accuracy with a 95 % bootstrap interval over patients and the chance level
(the share of the most frequent class). Retrieval reads embeddings by cosine alone; this probe
says whether the class is in them at all, in a direction a linear map can find.

Prints one Markdown table. Exit codes: 0 done, 2 bad input (the reason names the file).
"""
import argparse
import sys

import h5py
import numpy as np

FORMAT = "m3ret-embeddings"
MODALITY_ORDER = ["xray", "ultrasound", "endoscopy", "ct", "mri"]


def modality_key(modality):
    """Sort key: the report's modality order, then any other modality by name."""
    return (MODALITY_ORDER.index(modality) if modality in MODALITY_ORDER else 99, modality)


PROGRAM = "linear_probe"  # the name errors start with (bench/whitening_probe.py sets its own)


def fail(message):
    print(f"{PROGRAM}: {message}", file=sys.stderr)
    sys.exit(2)


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def strings(dataset):
    return np.array([text(x) for x in dataset[:]])


def load(path):
    try:
        with h5py.File(path, "r") as f:
            fmt = text(f.attrs.get("format", ""))
            if fmt != FORMAT:
                fail(f"'{path}' is not an m3ret embeddings file (format attribute {fmt!r})")
            for key in ("embeddings", "labels", "modality", "groups", "splits"):
                if key not in f:
                    fail(f"'{path}' has no dataset '{key}'")
            data = {
                "x": f["embeddings"][:].astype(np.float64),
                "label": strings(f["labels"]),
                "modality": strings(f["modality"]),
                "group": strings(f["groups"]),
                "split": strings(f["splits"]),
            }
            name = text(f.attrs.get("encoder", ""))
            weights = text(f.attrs.get("weights", ""))
    except OSError as e:
        fail(f"cannot read '{path}': {e}")
    n = len(data["x"])
    if any(len(v) != n for v in data.values()):
        fail(f"'{path}': datasets have different row counts")
    data["name"] = f"{name} ({weights})" if weights else name
    return data


def probe(x, labels, groups, folds, ridge, seed):
    """Per-row correctness (bool array) of a patient-grouped k-fold ridge classifier."""
    classes = sorted(set(labels))
    targets = (labels[:, None] == np.array(classes)[None, :]).astype(np.float64)
    patients = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(patients))
    fold_of = {patients[p]: i % folds for i, p in enumerate(order)}
    fold = np.array([fold_of[g] for g in groups])
    correct = np.zeros(len(labels), dtype=bool)
    for k in range(folds):
        train, test = fold != k, fold == k
        if not test.any() or not train.any():
            continue
        mean, std = x[train].mean(0), x[train].std(0) + 1e-8
        a, b = (x[train] - mean) / std, (x[test] - mean) / std
        t = targets[train] - targets[train].mean(0)
        w = np.linalg.solve(a.T @ a + ridge * len(a) * np.eye(a.shape[1]), a.T @ t)
        predicted = np.array(classes)[(b @ w).argmax(1)]
        correct[test] = predicted == labels[test]
    return correct


def bootstrap_interval(correct, groups, draws, seed):
    patients = sorted(set(groups))
    index = {p: i for i, p in enumerate(patients)}
    g = np.array([index[x] for x in groups])
    hits = np.bincount(g, weights=correct.astype(np.float64), minlength=len(patients))
    rows = np.bincount(g, minlength=len(patients)).astype(np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(patients), size=(draws, len(patients)))
    means = hits[picks].sum(1) / rows[picks].sum(1)
    return np.quantile(means, 0.025), np.quantile(means, 0.975)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--split", default="test", help="rows of this split ('' = all)")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--ridge", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    if args.folds < 2:
        fail(f"--folds must be at least 2, got {args.folds}")
    if args.ridge <= 0:
        fail(f"--ridge must be positive, got {args.ridge}")
    if args.bootstrap < 1:
        fail(f"--bootstrap must be at least 1, got {args.bootstrap}")

    tables = []
    modalities = []
    for path in args.files:
        data = load(path)
        keep = data["split"] == args.split if args.split else np.ones(len(data["x"]), bool)
        if not keep.any():
            fail(f"'{path}' has no rows of split '{args.split}'")
        cells, chance = {}, {}
        for mod in sorted(set(data["modality"][keep])):
            s = keep & (data["modality"] == mod)
            labels, groups = data["label"][s], data["group"][s]
            if len(set(labels)) < 2 or len(set(groups)) < args.folds:
                continue  # nothing to classify, or too few patients for the folds
            correct = probe(data["x"][s], labels, groups, args.folds, args.ridge, args.seed)
            lo, hi = bootstrap_interval(correct, groups, args.bootstrap, args.seed)
            cells[mod] = f"{correct.mean():.3f} [{lo:.3f}–{hi:.3f}]"
            chance[mod] = max(np.mean(labels == c) for c in set(labels))
            if mod not in modalities:
                modalities.append(mod)
        tables.append((f"{data['name']}: {path}", cells, chance))
    modalities.sort(key=modality_key)

    print("| embeddings | " + " | ".join(modalities) + " |")
    print("|---|" + "---|" * len(modalities))
    for name, cells, _ in tables:
        print(f"| {name} | " + " | ".join(cells.get(m, "—") for m in modalities) + " |")
    chance = {}
    for _, _, c in tables:
        for m, v in c.items():
            chance.setdefault(m, v)
    print("| chance | " + " | ".join(
        f"{chance[m]:.3f}" if m in chance else "—" for m in modalities) + " |")


if __name__ == "__main__":
    main()
