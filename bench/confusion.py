#!/usr/bin/env python3
"""Which classes does retrieval confuse? The class of each query's nearest neighbour.

    python3 bench/confusion.py [--split test] [--modalities xray,ultrasound,endoscopy,ct] \
        EMBEDDINGS.h5 [EMBEDDINGS.h5 ...]

Reads m3ret embeddings files (bench/linear_probe.py says which), e.g. the `embeddings-<name>.h5`
a demo folder keeps for every encoder of its comparison. Within each modality of `--modalities`
(default: every modality of the split), every row of `--split` is a query against the other rows
of its modality, as `m3ret eval` ranks them: cosine, the candidates of the query's own patient
excluded, ties to the lower row. Its top-1 candidate's label is counted in the row of the query's
label; the counts of the modalities are summed. A query without a label, or whose label has no
candidate in its modality, is left out (as from recall); a neighbour without one is counted under
"(no label)".

Prints one Markdown table per file: per query label, the share of its queries whose nearest
neighbour carries each label (the diagonal is that label's recall@1 over the modalities pooled),
and the number of queries. Rows with more than one label are refused: the table assumes one class
per sample. Exit codes: 0 done, 2 bad input (the reason names the file or the option).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import linear_probe  # noqa: E402  (load, the modality order)
import whitening_probe  # noqa: E402  (nearest: the eval's top-1)

linear_probe.PROGRAM = "confusion"
fail = linear_probe.fail


NO_LABEL = "(no label)"


def confusion(x, labels, groups, classes, columns):
    """counts[i, j]: queries of classes[i] whose nearest other-patient row is of columns[j]."""
    top = whitening_probe.nearest(x, groups)
    same = groups[:, None] == groups[None, :]
    has_relevant = ((labels[:, None] == labels[None, :]) & ~same).any(1) & (labels != "")
    row = {c: i for i, c in enumerate(classes)}
    column = {c: i for i, c in enumerate(columns)}
    counts = np.zeros((len(classes), len(columns)), dtype=np.int64)
    for q in np.where((top >= 0) & has_relevant)[0]:
        counts[row[labels[q]], column[labels[top[q]] or NO_LABEL]] += 1
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--split", default="test", help="rows evaluated ('' = all)")
    parser.add_argument("--modalities", default="", help="comma-separated; default all")
    args = parser.parse_args()
    wanted = [m for m in args.modalities.split(",") if m] if args.modalities else []

    for n, path in enumerate(args.files):
        data = linear_probe.load(path)
        keep = data["split"] == args.split if args.split else np.ones(len(data["x"]), bool)
        if not keep.any():
            fail(f"'{path}' has no rows of split '{args.split}'")
        multi = [x for x in data["label"][keep] if "|" in x]
        if multi:
            fail(f"'{path}' has rows with more than one label (e.g. '{multi[0]}')")
        present = set(data["modality"][keep])
        for m in wanted:
            if m not in present:
                fail(f"'{path}' has no rows of modality '{m}' in split '{args.split}'")
        modalities = wanted or sorted(present, key=linear_probe.modality_key)
        found = set(data["label"][keep & np.isin(data["modality"], modalities)])
        classes = sorted(found - {""})
        columns = classes + ([NO_LABEL] if "" in found else [])
        counts = np.zeros((len(classes), len(columns)), dtype=np.int64)
        for mod in modalities:
            s = keep & (data["modality"] == mod)
            counts += confusion(data["x"][s], data["label"][s], data["group"][s], classes, columns)
        if n:
            print()
        print(f"{data['name']}: {path}; {', '.join(modalities)}")
        print()
        print("| query \\ nearest | " + " | ".join(columns) + " | queries |")
        print("|---|" + "---|" * (len(columns) + 1))
        for i, c in enumerate(classes):
            total = counts[i].sum()
            shares = [f"{v / total:.2f}" if total else "—" for v in counts[i]]
            print(f"| {c} | " + " | ".join(shares) + f" | {total} |")


if __name__ == "__main__":
    main()
