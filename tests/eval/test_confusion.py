"""What bench/confusion.py measures, on embeddings files whose answer is known by construction.

- two classes that share one direction are confused with each other about half the time, four
  classes with their own directions never: the printed table equals a brute-force count written
  here (cosine, the query's own patient left out, ties to the lower row);
- rows of one patient identical, labels drawn per patient: leaving the patient out is what keeps
  the diagonal near chance;
- a tie goes to the lower row; a query whose label has no other-patient row is left out; an
  unlabelled neighbour is counted under "(no label)"; modalities are counted apart and summed;
- a file that is not an embeddings file, a modality or split it lacks, a row with two labels:
  exit 2 and the message names it.
"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

SOURCE = os.environ.get("M3RET_SOURCE_DIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCRIPT = os.path.join(SOURCE, "bench", "confusion.py")
CLASSES = ["a", "b", "c", "d", "e", "f"]


def write(path, embeddings, labels, groups, modality=None):
    n = len(labels)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "m3ret-embeddings"
        f.attrs["encoder"] = "test"
        f["embeddings"] = np.asarray(embeddings, dtype=np.float32)
        f["labels"] = np.array(labels, dtype="S")
        f["groups"] = np.array(groups, dtype="S")
        f["modality"] = np.array(modality or ["xray"] * n, dtype="S")
        f["splits"] = np.array(["test"] * n, dtype="S")


def run(args):
    return subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True)


def table(args):
    out = run(args)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")][1:-1]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = (dict(zip(header, cells[1:-1])), int(cells[-1]))
    return rows


def brute_force(x, labels, groups):
    """counts[(query label, neighbour label)], written from the definition, one query at a time."""
    x = np.asarray(x, dtype=np.float32)  # as stored
    counts = {}
    for q in range(len(labels)):
        best, best_sim = None, None
        for c in range(len(labels)):
            if groups[c] == groups[q]:
                continue
            sim = float(np.dot(x[q], x[c]) / (np.linalg.norm(x[q]) * np.linalg.norm(x[c])))
            if best is None or sim > best_sim:  # strictly greater: a tie keeps the lower row
                best, best_sim = c, sim
        relevant = any(labels[c] == labels[q] and groups[c] != groups[q]
                       for c in range(len(labels)))
        if best is None or not relevant:
            continue
        key = (labels[q], labels[best])
        counts[key] = counts.get(key, 0) + 1
    return counts


def main():
    rng = np.random.default_rng(3)
    patients = [(f"p{c}{i:02d}", c) for c in CLASSES for i in range(16)]
    groups = [p for p, _ in patients for _ in range(2)]
    labels = [c for _, c in patients for _ in range(2)]
    direction = {c: rng.normal(size=24) for c in CLASSES}
    direction["b"] = direction["a"]  # a and b look alike
    x = np.stack([direction[c] for c in labels]) * 3 + rng.normal(size=(len(labels), 24))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "shared.h5")
        write(path, x, labels, groups)
        rows = table([path])
        expected = brute_force(x, labels, groups)
        for c in CLASSES:
            shares, queries = rows[c]
            assert queries == 32, (c, queries)
            for d in CLASSES:
                want = expected.get((c, d), 0) / 32
                assert abs(float(shares[d]) - want) < 0.006, (c, d, shares[d], want)
        for c in "cdef":
            assert float(rows[c][0][c]) > 0.9, rows[c]
        for c, other in (("a", "b"), ("b", "a")):
            assert 0.2 < float(rows[c][0][other]) < 0.8, rows[c]  # confused, both ways
            assert float(rows[c][0][c]) + float(rows[c][0][other]) > 0.95, rows[c]

        # Each patient's two rows identical and its label random: a table that let a query find
        # its own patient would have a diagonal of 1.
        per_patient = {p: rng.normal(size=64) for p, _ in patients}
        random_label = {p: CLASSES[rng.integers(len(CLASSES))] for p, _ in patients}
        path = os.path.join(tmp, "patient.h5")
        pl = [random_label[g] for g in groups]
        px = np.stack([per_patient[g] for g in groups])
        write(path, px, pl, groups)
        rows = table([path])
        hits = sum(float(rows[c][0][c]) * rows[c][1] for c in rows)
        assert hits / sum(q for _, q in rows.values()) < 0.4, rows

        # A tie goes to the lower row; a label with no other-patient row is no query; an
        # unlabelled neighbour is counted apart.
        v = [1.0, 2.0, 3.0]
        path = os.path.join(tmp, "tie.h5")
        write(path, [v, v, v, [3.0, 2.0, 1.0], [2.9, 2.0, 1.0]],
              ["a", "b", "a", "c", ""], ["q", "p1", "p2", "p3", "p4"])
        rows = table([path])
        assert rows["a"] == ({"a": "0.50", "b": "0.50", "c": "0.00", "(no label)": "0.00"}, 2), rows
        assert rows["b"][1] == 0 and rows["b"][0]["a"] == "—", rows["b"]
        assert rows["c"][1] == 0, rows["c"]  # c's only other-patient rows are not c
        assert "" not in rows, rows

        # Two modalities: each query searches its own; --modalities picks which are summed.
        path = os.path.join(tmp, "two.h5")
        both_x = np.concatenate([x, -x])
        both_labels = labels + labels
        write(path, both_x, both_labels, groups + [g + "ct" for g in groups],
              ["xray"] * len(labels) + ["ct"] * len(labels))
        assert table([path, "--modalities", "xray"])["c"][1] == 32
        assert table([path])["c"][1] == 64
        rows = table([path, "--modalities", "ct"])
        ct = brute_force(-x, labels, groups)
        assert abs(float(rows["a"][0]["b"]) - ct.get(("a", "b"), 0) / 32) < 0.006, rows["a"]

        bad = os.path.join(tmp, "not-embeddings.h5")
        with h5py.File(bad, "w") as f:
            f["x"] = np.zeros(3)
        out = run([bad])
        assert out.returncode == 2 and bad in out.stderr, (out.returncode, out.stderr)
        out = run([os.path.join(tmp, "shared.h5"), "--modalities", "mri"])
        assert out.returncode == 2 and "'mri'" in out.stderr, out.stderr
        out = run([os.path.join(tmp, "shared.h5"), "--split", "val"])
        assert out.returncode == 2 and "'val'" in out.stderr, out.stderr
        multi = os.path.join(tmp, "multi.h5")
        write(multi, [v, v], ["a|b", "a"], ["q", "p"])
        out = run([multi])
        assert out.returncode == 2 and multi in out.stderr and "a|b" in out.stderr, out.stderr
    print("confusion: ok")


if __name__ == "__main__":
    main()
