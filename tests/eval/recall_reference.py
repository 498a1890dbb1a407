#!/usr/bin/env python3
"""Independent reference for m3ret's retrieval metrics (numpy + h5py).

Reads an m3ret embeddings file (checking its format attributes) and prints the
report's metrics as JSON: {"per_modality": {m: {...}}, "cross_modal": {"a->b": {...}}}
with queries, skipped_no_label, skipped_no_relevant, recall@k, precision@k, map@K (K = max k:
AP@K = sum of precision@i at the relevant ranks i <= K, divided by min(R, K)).
Definitions: docs/evaluation.md. Similarities in float64; ties by sample index.

With --whiten-dims d: before the cosine, rows are PCA-whitened to d dimensions as docs/evaluation.md
"Whitening" defines it, written here from that definition with numpy's SVD: fitted on the rows of
--whiten-split (mean, then the first d right singular vectors of the centred rows, each divided by
its singular value). Per modality (--whiten-fit modality) a modality uses its own fit rows, or all
fit rows pooled when it has none; cross-modal rows always use the pooled fit.
"""
import argparse
import json
import sys

import h5py
import numpy as np

MODALITY_ORDER = ["xray", "ultrasound", "endoscopy", "ct", "mri", "other"]


def strings(ds):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]]


def load(path):
    with h5py.File(path, "r") as f:
        fmt = f.attrs["format"]
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        assert fmt == "m3ret-embeddings", f"format {fmt!r}"
        assert int(f.attrs["format_version"]) == 1
        X = np.asarray(f["embeddings"][()], dtype=np.float32)
        assert X.ndim == 2 and int(f.attrs["dim"]) == X.shape[1]
        meta = {k: strings(f[k]) for k in ("ids", "labels", "groups", "modality", "splits")}
        for k, v in meta.items():
            assert len(v) == X.shape[0], k
    labels = [frozenset(l for l in s.split("|") if l) for s in meta["labels"]]
    return X, labels, meta["groups"], meta["modality"], meta["splits"]


def metrics(Y, labels, groups, queries, gallery, ks, exact):
    out = {"queries": 0, "skipped_no_label": 0, "skipped_no_relevant": 0}
    rec = {k: 0.0 for k in ks}
    prec = {k: 0.0 for k in ks}
    ap_sum = 0.0
    S = Y[queries] @ Y[gallery].T  # [nq, ng]
    g_groups = np.array([groups[g] if groups[g] else f"\0{g}" for g in gallery])
    for qi, q in enumerate(queries):
        if not labels[q]:
            out["skipped_no_label"] += 1
            continue
        qg = groups[q] if groups[q] else f"\0{q}"
        keep = (g_groups != qg) & (np.array(gallery) != q)
        cand = np.array(gallery)[keep]
        scores = S[qi][keep]
        if exact:
            rel = np.array([labels[g] == labels[q] for g in cand], dtype=bool)
        else:
            rel = np.array([bool(labels[g] & labels[q]) for g in cand], dtype=bool)
        R = int(rel.sum())
        if R == 0:
            out["skipped_no_relevant"] += 1
            continue
        out["queries"] += 1
        order = np.lexsort((cand, -scores))  # by score desc, then sample index asc
        r = rel[order]
        for k in ks:
            rec[k] += float(r[:k].any())
            prec[k] += r[:k].sum() / k
        K = max(ks)
        top = r[:K]
        hits = np.cumsum(top)
        ap_sum += float((hits / np.arange(1, len(top) + 1))[top].sum()) / min(R, K)
    n = out["queries"]
    for k in ks:
        out[f"recall@{k}"] = rec[k] / n if n else 0.0
        out[f"precision@{k}"] = prec[k] / n if n else 0.0
    out[f"map@{max(ks)}"] = ap_sum / n if n else 0.0
    return out


def whitener(X, rows, d):
    fit = X[rows]
    mean = fit.mean(0)
    _, s, vt = np.linalg.svd(fit - mean, full_matrices=False)
    return lambda x: (x - mean) @ vt[:d].T / s[:d]


def unit(X):
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("embeddings")
    ap.add_argument("--ks", default="1,5,10")
    ap.add_argument("--split", default="test")
    ap.add_argument("--relevance", default="shared-label", choices=["shared-label", "same-labels"])
    ap.add_argument("--no-cross-modal", action="store_true")
    ap.add_argument("--whiten-dims", type=int, default=0)
    ap.add_argument("--whiten-split", default="train")
    ap.add_argument("--whiten-fit", default="modality", choices=["modality", "all"])
    a = ap.parse_args()
    ks = [int(k) for k in a.ks.split(",")]
    X, labels, groups, modality, splits = load(a.embeddings)
    X64 = X.astype(np.float64)
    Y = Y_cross = unit(X64)
    if a.whiten_dims > 0:
        fit = [i for i in range(len(X)) if not a.whiten_split or splits[i] == a.whiten_split]
        pooled = whitener(X64, fit, a.whiten_dims)
        Y_cross = unit(pooled(X64))
        Y = Y_cross.copy()
        if a.whiten_fit == "modality":
            for m in set(modality):
                own = [i for i in fit if modality[i] == m]
                rows = [i for i in range(len(X)) if modality[i] == m]
                if own:
                    Y[rows] = unit(whitener(X64, own, a.whiten_dims)(X64[rows]))
    sel = [i for i in range(len(X)) if not a.split or splits[i] == a.split]
    by_mod = {}
    for i in sel:
        by_mod.setdefault(modality[i], []).append(i)
    order = [m for m in MODALITY_ORDER if m in by_mod] + sorted(m for m in by_mod if m not in MODALITY_ORDER)
    exact = a.relevance == "same-labels"
    report = {"per_modality": {}, "cross_modal": {}}
    for m in order:
        report["per_modality"][m] = metrics(Y, labels, groups, by_mod[m], by_mod[m], ks, exact)
    if not a.no_cross_modal:
        vocab = {m: set().union(*[labels[i] for i in by_mod[m]]) for m in order}
        for qa in order:
            for gb in order:
                if qa != gb and vocab[qa] & vocab[gb]:
                    report["cross_modal"][f"{qa}->{gb}"] = metrics(
                        Y_cross, labels, groups, by_mod[qa], by_mod[gb], ks, exact)
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
