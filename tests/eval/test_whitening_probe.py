"""What bench/whitening_probe.py measures, on embeddings files whose answer is known by construction.

- the class lies in low-variance directions under four loud noise directions: cosine retrieval
  is near chance, whitening fitted on other patients' (train) rows finds the class;
- a modality without train rows has no whitened cell, and with --pooled it borrows the others';
- the same input gives the same table; a file that is not an embeddings file, a split with no
  rows or a bad option: exit 2 and the message names it.
"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

SOURCE = os.environ.get("M3RET_SOURCE_DIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCRIPT = os.path.join(SOURCE, "bench", "whitening_probe.py")
CLASSES = ["a", "b", "c", "d", "e", "f"]


def write(path, embeddings, labels, groups, modality, splits):
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "m3ret-embeddings"
        f.attrs["encoder"] = "synthetic"
        f["embeddings"] = embeddings.astype(np.float32)
        for key, values in (("labels", labels), ("groups", groups), ("modality", modality),
                            ("splits", splits)):
            f[key] = np.array(values, dtype="S")


def run(args):
    return subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True)


def table(args):
    out = run(args)
    assert out.returncode == 0, out.stderr
    rows = {}
    for line in out.stdout.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].split(", ")[-1]] = cells[1:]
    return rows


def value(cell):
    return float(cell.split(" [")[0])


def main():
    rng = np.random.default_rng(3)
    means = rng.normal(size=(len(CLASSES), 6))
    rows = []  # (label, group, modality, split)
    for modality, splits in (("xray", ("train", "test")), ("mri", ("test",))):
        for split in splits:
            for c in CLASSES:
                for i in range(12):
                    rows += [(c, f"{modality}-{split}-{c}{i}", modality, split)] * 2
    labels = [r[0] for r in rows]
    x = np.concatenate([
        rng.normal(size=(len(rows), 4)) * 20,  # loud, class-free
        np.stack([means[CLASSES.index(c)] for c in labels]) + rng.normal(size=(len(rows), 6)) * 0.3,
        rng.normal(size=(len(rows), 14)) * 0.05], axis=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "emb.h5")
        write(path, x, labels, [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
        t = table([path, "--dims", "10"])
        xray, mri = 0, 1
        assert value(t["cosine"][xray]) < 0.35, t["cosine"]
        assert value(t["d=10"][xray]) > 0.8, t["d=10"]
        assert t["d=10"][mri] == "—", t["d=10"]  # no MRI train rows to fit on
        assert abs(float(t["chance"][xray]) - 22 / 142) < 1e-3, t["chance"]
        pooled = table([path, "--dims", "10", "--pooled"])
        assert value(pooled["d=10"][mri]) > 0.8, pooled["d=10"]  # fitted on X-ray's train rows
        assert table([path, "--dims", "10"]) == t

        bad = os.path.join(tmp, "not-embeddings.h5")
        with h5py.File(bad, "w") as f:
            f["x"] = np.zeros(3)
        out = run([bad])
        assert out.returncode == 2 and bad in out.stderr, (out.returncode, out.stderr)
        out = run([path, "--split", "val"])
        assert out.returncode == 2 and "'val'" in out.stderr, out.stderr
        out = run([path, "--fit-split", "val"])
        assert out.returncode == 2 and "'val'" in out.stderr, out.stderr
        for flag, arg in (("--dims", "0"), ("--dims", "x"), ("--bootstrap", "0")):
            out = run([path, flag, arg])
            assert out.returncode == 2 and flag in out.stderr, (flag, out.returncode, out.stderr)
    print("whitening_probe: ok")


if __name__ == "__main__":
    main()
