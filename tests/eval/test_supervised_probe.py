"""What bench/supervised_probe.py measures, on shards whose answer is known by construction.

- classes that differ in the orientation of a pattern: the supervised encoder (the ViT with either
  stem, and the CNN) retrieves the test rows by class and its classifier names them;
- train labels drawn per patient, unrelated to the images, and true test labels: the classifier
  names the test rows at chance (a probe that learned from the test rows would name them);
- `--shuffle-labels` on the pattern data: the classifier's accuracy falls to chance;
- the output is an embeddings file in `--like`'s row order, with its ids and labels;
- bad input (a modality the shards lack, a file that is not an embeddings file, a bad option,
  an output folder that does not exist, shards without an index, a train row with several
  labels): exit 2 before any training, and the message names it.
"""
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np

SOURCE = os.environ.get("M3RET_SOURCE_DIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCRIPT = os.path.join(SOURCE, "bench", "supervised_probe.py")
sys.path.insert(0, os.path.join(SOURCE, "bench"))
import whitening_probe  # noqa: E402  (recall_at_1: leave-one-patient-out cosine retrieval)

CLASSES = ["diagonal", "horizontal", "vertical"]
SIZE = 32
SMALL = ["--train-modalities", "xray", "--depth", "1", "--width", "48", "--heads", "2",
         "--tubelet", "2,8,8", "--batch", "16",
         "--warmup", "10", "--lr", "2e-3", "--log-every", "50", "--threads", "1"]


def pattern(label, rng):
    """Stripes of period 8 px at the class's angle, random phase; equal mean for every class."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    angle = {"horizontal": 0.0, "vertical": np.pi / 2, "diagonal": np.pi / 4}[label]
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * (x * np.sin(angle) + y * np.cos(angle)) / 8 + phase)
    return np.clip(128 + 100 * wave + rng.normal(0, 10, wave.shape), 0, 255)


def write_shards(folder, rng, random_train_labels=False):
    """One xray shard folder: 8 train and 8 test patients per class, 2 images each. With
    random_train_labels the train rows' labels are drawn per patient, unrelated to the image."""
    rows = []  # (id, label, group, split, pixels)
    for split in ("train", "test"):
        for c in CLASSES:
            for p in range(8):
                group = f"xray-{split}-{c}-{p}"
                label = c
                if random_train_labels and split == "train":
                    label = CLASSES[rng.integers(len(CLASSES))]
                for s in range(2):
                    rows.append((f"{group}-s{s}", label, group, split, pattern(c, rng)))
    os.makedirs(os.path.join(folder, "xray"))
    with h5py.File(os.path.join(folder, "xray", "shard-00000.h5"), "w") as f:
        f["pixels"] = np.stack([r[4] for r in rows]).astype(np.uint8)[:, None, None]
        for key, col in (("ids", 0), ("labels", 1), ("groups", 2), ("splits", 3)):
            f[key] = np.array([r[col] for r in rows], dtype="S")
        f.attrs["clip"] = np.array([1, 1])
    index = ('{"format": "m3ret-shards", "modalities": {"xray": {"shards": '
             '[{"file": "xray/shard-00000.h5"}]}}}')
    with open(os.path.join(folder, "index.json"), "w") as f:
        f.write(index)
    test = [r for r in rows if r[3] == "test"][::-1]  # an order of its own, not the shards'
    like = os.path.join(folder, "like.h5")
    with h5py.File(like, "w") as f:
        f.attrs["format"] = "m3ret-embeddings"
        f.attrs["encoder"] = "raw-pixels"
        f.attrs["dim"] = np.int64(4)
        f["embeddings"] = np.zeros((len(test), 4), dtype=np.float32)
        for key, col in (("ids", 0), ("labels", 1), ("groups", 2), ("splits", 3)):
            f[key] = np.array([r[col] for r in test], dtype="S")
        f["modality"] = np.array(["xray"] * len(test), dtype="S")
    return like


def run(args):
    return subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True)


def probe(folder, like, out, extra):
    result = run(["--shards", folder, "--like", like, "--out", out] + SMALL + extra)
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"xray (\d\.\d+)", result.stdout).group(1))
    with h5py.File(out, "r") as f:
        x = f["embeddings"][:]
        labels = np.array([v.decode() for v in f["labels"][:]])
        groups = np.array([v.decode() for v in f["groups"][:]])
        ids = f["ids"][:]
        assert f.attrs["encoder"] == "supervised" and f.attrs["format"] == "m3ret-embeddings"
        assert int(f.attrs["dim"]) == x.shape[1] == 48
    with h5py.File(like, "r") as f:
        assert (ids == f["ids"][:]).all()
    hits, _, chance = whitening_probe.recall_at_1(x, labels, groups)
    return hits.mean(), chance, accuracy


def main():
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as tmp:
        stripes = os.path.join(tmp, "stripes")
        like = write_shards(stripes, rng)
        out = os.path.join(tmp, "supervised.h5")
        recall, chance, accuracy = probe(stripes, like, out, ["--steps", "300"])
        assert abs(chance - 14 / 46) < 1e-6, chance  # 14 relevant of 46 other-patient rows
        assert recall > 0.75 and accuracy > 0.75, (recall, accuracy)

        recall, _, accuracy = probe(stripes, like, out, ["--steps", "300", "--model", "cnn"])
        assert recall > 0.75 and accuracy > 0.75, (recall, accuracy)

        recall, _, accuracy = probe(stripes, like, out, ["--steps", "300", "--stem", "hmlp"])
        assert recall > 0.75 and accuracy > 0.75, (recall, accuracy)

        _, _, accuracy = probe(stripes, like, out, ["--steps", "300", "--shuffle-labels"])
        assert accuracy < 0.6, accuracy

        # Train labels unrelated to the images, test labels true: only a probe that learned from
        # the test rows could name their class.
        unrelated = os.path.join(tmp, "unrelated")
        unrelated_like = write_shards(unrelated, rng, random_train_labels=True)
        _, _, accuracy = probe(unrelated, unrelated_like, out, ["--steps", "300"])
        assert accuracy < 0.6, accuracy

        for args, named in ((["--train-modalities", "ct"], "'ct'"),
                            (["--like", os.path.join(stripes, "xray", "shard-00000.h5")],
                             "shard-00000.h5"),
                            (["--crop-scale", "0.6"], "--crop-scale"),
                            (["--out", os.path.join(tmp, "no-such-folder", "s.h5")],
                             "no-such-folder"),
                            (["--tubelet", "2,x,8"], "--tubelet"),
                            (["--stem", "hmlp", "--tubelet", "2,6,6"], "--stem hmlp")):
            base = {"--shards": stripes, "--like": like, "--out": out, "--train-modalities": "xray"}
            for i in range(0, len(args), 2):
                base[args[i]] = args[i + 1]
            result = run([v for kv in base.items() for v in kv] + ["--steps", "1"])
            assert result.returncode == 2 and named in result.stderr, (args, result.stderr)
        result = run(["--shards", tmp, "--like", like, "--out", out])
        assert result.returncode == 2 and "index.json" in result.stderr, result.stderr
        with h5py.File(os.path.join(stripes, "xray", "shard-00000.h5"), "r+") as f:
            labels = f["labels"][:].astype("S32")
            labels[0] = b"diagonal|vertical"  # a train row with two labels
            del f["labels"]
            f["labels"] = labels
        result = run(["--shards", stripes, "--like", like, "--out", out,
                      "--train-modalities", "xray"])
        assert result.returncode == 2 and "'diagonal|vertical'" in result.stderr, result.stderr
    print("supervised_probe: ok")


if __name__ == "__main__":
    main()
