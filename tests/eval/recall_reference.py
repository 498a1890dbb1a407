#!/usr/bin/env python3
"""Independent reference for m3ret's retrieval metrics (numpy + h5py).

Reads an m3ret embeddings file (checking its format attributes) and prints the
report's metrics as JSON: {"per_modality": {m: {...}}, "cross_modal": {"a->b": {...}}}
with queries, skipped_no_label, skipped_no_relevant, recall@k, precision@k, map@K (K = max k:
AP@K = sum of precision@i at the relevant ranks i <= K, divided by min(R, K)).
Definitions: docs/evaluation.md. Similarities in float64; ties by sample index.
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("embeddings")
    ap.add_argument("--ks", default="1,5,10")
    ap.add_argument("--split", default="test")
    ap.add_argument("--relevance", default="shared-label", choices=["shared-label", "same-labels"])
    ap.add_argument("--no-cross-modal", action="store_true")
    a = ap.parse_args()
    ks = [int(k) for k in a.ks.split(",")]
    X, labels, groups, modality, splits = load(a.embeddings)
    X64 = X.astype(np.float64)
    norms = np.linalg.norm(X64, axis=1, keepdims=True)
    Y = np.divide(X64, norms, out=np.zeros_like(X64), where=norms > 0)
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
                        Y, labels, groups, by_mod[qa], by_mod[gb], ks, exact)
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
