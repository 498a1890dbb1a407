#!/usr/bin/env python3
"""Does whitening bring an encoder's class forward? Cosine retrieval before and after PCA whitening.

    python3 bench/whitening_probe.py [--split test] [--fit-split train] [--dims 8,16,32,64] \
        [--pooled] [--bootstrap 1000] [--seed 0] EMBEDDINGS.h5 [EMBEDDINGS.h5 ...]

Reads m3ret embeddings files (bench/linear_probe.py says which), e.g. a demo folder's
`embeddings-<name>.h5` embedded over every split (`m3ret embed` without `--split`), or one file
per split. For each file and modality it measures recall@1 of leave-one-out cosine retrieval on
the rows of `--split` (candidates of the query's own patient excluded, ties to the lower row, as
`m3ret eval` ranks), first as the embeddings are, then after whitening to d dimensions: centre on
the mean of the `--fit-split` rows, project on their first d principal directions and divide by
the singular values. The whitening uses no label. It is fitted on the fit split's rows of the same
modality, or with `--pooled` on all the fit split's rows of the file; a modality with no more fit
rows than d has no whitened cell ("—"). With `--fit-file FILE` every file is whitened as fitted
on FILE's rows of `--fit-split` ('' = all), e.g. the train split embedded on its own.

Prints one Markdown table: recall@1 with its 95 % bootstrap interval over patients, and the
chance level (the mean over queries of relevant / candidates). Exit codes: 0 done, 2 bad input
(the reason names the file or the option).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import linear_probe  # noqa: E402  (load, bootstrap_interval, the modality order)

linear_probe.PROGRAM = "whitening_probe"
fail = linear_probe.fail


def nearest(x, groups):
    """Each row's top-1 candidate by cosine, rows of its own patient excluded, ties to the lower row
    (as `m3ret eval` ranks); -1 where a row has no candidate."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    y = x / np.where(norm > 0, norm, 1)
    sim = y @ y.T
    same = groups[:, None] == groups[None, :]
    sim[same] = -np.inf
    top = sim.argmax(1)  # argmax returns the first (lowest) index among ties
    return np.where((~same).any(1), top, -1)


def recall_at_1(x, labels, groups):
    """Per-query hit at rank 1 and chance level, cosine, same patient excluded."""
    same = groups[:, None] == groups[None, :]
    relevant = (labels[:, None] == labels[None, :]) & ~same
    candidates = (~same).sum(1)
    ok = (relevant.sum(1) > 0) & (candidates > 0)
    hits = labels[nearest(x, groups)] == labels
    chance = relevant.sum(1)[ok] / candidates[ok]
    return hits[ok], groups[ok], chance.mean() if ok.any() else float("nan")


def whitener(fit, d):
    mean = fit.mean(0)
    _, s, vt = np.linalg.svd(fit - mean, full_matrices=False)
    if d > len(s) or s[d - 1] <= s[0] * 1e-6:  # as `m3ret eval` (eval/whitening.h)
        return None
    return lambda x: (x - mean) @ vt[:d].T / s[:d]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--split", default="test", help="rows evaluated ('' = all)")
    parser.add_argument("--fit-split", default="train", help="rows the whitening is fitted on")
    parser.add_argument("--fit-file", default="", help="fit on this file instead of each file")
    parser.add_argument("--dims", default="8,16,32,64", help="comma-separated d")
    parser.add_argument("--pooled", action="store_true", help="one whitening for all modalities")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        dims = [int(d) for d in args.dims.split(",")]
    except ValueError:
        fail(f"--dims must be comma-separated integers, got {args.dims!r}")
    if not dims or min(dims) < 1:
        fail(f"--dims must be at least 1 each, got {args.dims!r}")
    if args.bootstrap < 1:
        fail(f"--bootstrap must be at least 1, got {args.bootstrap}")

    def rows_of(data, split):
        return data["split"] == split if split else np.ones(len(data["x"]), bool)

    fit_data = linear_probe.load(args.fit_file) if args.fit_file else None
    lines, modalities, chance = [], [], {}
    for path in args.files:
        data = linear_probe.load(path)
        source = fit_data if fit_data is not None else data
        keep = rows_of(data, args.split)
        fit_rows = rows_of(source, args.fit_split)
        if not keep.any():
            fail(f"'{path}' has no rows of split '{args.split}'")
        if not fit_rows.any():
            fail(f"'{args.fit_file or path}' has no rows of split '{args.fit_split}' to fit on")
        cells = {f"d={d}": {} for d in dims}
        cells["cosine"] = {}
        for mod in sorted(set(data["modality"][keep])):
            s = keep & (data["modality"] == mod)
            fit = source["x"][fit_rows if args.pooled else fit_rows & (source["modality"] == mod)]
            labels, groups = data["label"][s], data["group"][s]
            results = {"cosine": recall_at_1(data["x"][s], labels, groups)}
            if len(results["cosine"][0]) == 0:
                continue
            if mod not in modalities:
                modalities.append(mod)
            chance.setdefault(mod, results["cosine"][2])
            for d in dims:
                transform = whitener(fit, d) if len(fit) > d else None
                if transform is not None:
                    results[f"d={d}"] = recall_at_1(transform(data["x"][s]), labels, groups)
            for name, (hits, hit_groups, _) in results.items():
                lo, hi = linear_probe.bootstrap_interval(hits, hit_groups, args.bootstrap,
                                                         args.seed)
                cells[name][mod] = f"{hits.mean():.3f} [{lo:.3f}–{hi:.3f}]"
        for name in ["cosine"] + [f"d={d}" for d in dims]:
            lines.append((f"{data['name']}: {path}, {name}", cells[name]))
    modalities.sort(key=linear_probe.modality_key)
    print("| embeddings, readout | " + " | ".join(modalities) + " |")
    print("|---|" + "---|" * len(modalities))
    for name, row in lines:
        print(f"| {name} | " + " | ".join(row.get(m, "—") for m in modalities) + " |")
    print("| chance | " + " | ".join(f"{chance[m]:.3f}" for m in modalities) + " |")


if __name__ == "__main__":
    main()
