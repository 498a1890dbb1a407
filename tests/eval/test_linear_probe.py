"""What bench/linear_probe.py measures, on embeddings files whose answer is known by construction.

- a class direction plus noise: the probe finds it (accuracy near 1);
- pure noise: accuracy near chance (1/6), the interval holds chance;
- each patient's rows share one random vector and the label is the patient's: only a probe that
  lets a patient's rows sit on both sides of a fold could score above chance;
- a file that is not an embeddings file, or a bad option: exit 2 and the message names it.
"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

SOURCE = os.environ.get("M3RET_SOURCE_DIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCRIPT = os.path.join(SOURCE, "bench", "linear_probe.py")
CLASSES = ["a", "b", "c", "d", "e", "f"]


def write(path, name, embeddings, labels, groups):
    n = len(labels)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "m3ret-embeddings"
        f.attrs["encoder"] = name
        f["embeddings"] = embeddings.astype(np.float32)
        f["labels"] = np.array(labels, dtype="S")
        f["groups"] = np.array(groups, dtype="S")
        f["modality"] = np.array(["xray"] * n, dtype="S")
        f["splits"] = np.array(["test"] * n, dtype="S")


def table(args):
    out = subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = {}
    for line in out.stdout.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].split(":")[0]] = cells[1]
    return rows


def value(cell):
    acc, interval = cell.split(" [")
    lo, hi = interval.rstrip("]").split("–")
    return float(acc), float(lo), float(hi)


def main():
    rng = np.random.default_rng(7)
    patients = [(f"p{c}{i:02d}", c) for c in CLASSES for i in range(16)]  # 96 patients
    groups = [p for p, _ in patients for _ in range(2)]
    labels = [c for _, c in patients for _ in range(2)]
    directions = rng.normal(size=(len(CLASSES), 32))
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        signal = np.stack([directions[CLASSES.index(c)] for c in labels]) * 1.5
        paths["signal"] = os.path.join(tmp, "signal.h5")
        write(paths["signal"], "signal", signal + rng.normal(size=signal.shape), labels, groups)
        paths["noise"] = os.path.join(tmp, "noise.h5")
        write(paths["noise"], "noise", rng.normal(size=(len(labels), 32)), labels, groups)
        # One random 400-d vector per patient, the class drawn at random per patient.
        per_patient = {p: rng.normal(size=400) for p, _ in patients}
        random_labels = {p: CLASSES[rng.integers(len(CLASSES))] for p, _ in patients}
        paths["patient"] = os.path.join(tmp, "patient.h5")
        write(paths["patient"], "patient", np.stack([per_patient[g] for g in groups]),
              [random_labels[g] for g in groups], groups)

        rows = table([paths["signal"], paths["noise"], paths["patient"], "--ridge", "0.001"])
        acc, lo, hi = value(rows["signal"])
        assert acc > 0.9 and lo > 0.8, rows["signal"]
        acc, lo, hi = value(rows["noise"])
        assert lo < 1 / 6 < hi and acc < 0.3, rows["noise"]
        acc, lo, hi = value(rows["patient"])
        assert acc < 0.35, rows["patient"]  # memorising patients must not pay
        chance = float(rows["chance"])
        assert abs(chance - 1 / 6) < 1e-3, rows["chance"]

        # The same data, the same seed: the same table.
        assert table([paths["noise"]]) == table([paths["noise"]])

        bad = os.path.join(tmp, "not-embeddings.h5")
        with h5py.File(bad, "w") as f:
            f["x"] = np.zeros(3)
        out = subprocess.run([sys.executable, SCRIPT, bad], capture_output=True, text=True)
        assert out.returncode == 2 and bad in out.stderr, (out.returncode, out.stderr)
        for flag, arg in (("--folds", "1"), ("--ridge", "0"), ("--bootstrap", "0")):
            out = subprocess.run([sys.executable, SCRIPT, paths["noise"], flag, arg],
                                 capture_output=True, text=True)
            assert out.returncode == 2 and flag in out.stderr, (flag, out.returncode, out.stderr)
    print("linear_probe: ok")


if __name__ == "__main__":
    main()
