"""Independent check of an m3ret shard with h5py (no m3ret code involved).

usage: check_shard_h5py.py SHARD.h5 EXPECTED.json EXPECTED_PIXELS.bin
Exits non-zero with a message on the first mismatch.
"""
import json
import sys

import h5py
import numpy as np


def main(shard, expected_json, expected_bin):
    want = json.load(open(expected_json))
    n = want["N"]
    shape = tuple(want["shape"])
    with h5py.File(shard, "r") as f:
        a = f.attrs
        assert a["format"] == "m3ret-shard", a["format"]
        assert int(a["format_version"]) == 5, a["format_version"]
        assert [int(x) for x in a["clip"]] == want["clip"], a["clip"]
        assert f["pixel_crc"].shape == (f["pixels"].shape[0],), f["pixel_crc"].shape
        assert a["modality"] == want["modality"], a["modality"]
        assert tuple(int(x) for x in a["shape"]) == shape, a["shape"]
        px = f["pixels"]
        assert px.dtype == np.uint8, px.dtype
        assert px.shape == (n,) + shape, px.shape
        assert px.chunks == (1,) + shape, px.chunks
        if want["compression"] > 0:
            assert px.compression == "gzip", px.compression
            assert px.compression_opts == want["compression"], px.compression_opts
        else:
            assert px.compression is None, px.compression
        pixels = np.fromfile(expected_bin, dtype=np.uint8).reshape((n,) + shape)
        np.testing.assert_array_equal(px[...], pixels)
        np.testing.assert_array_equal(px[1], pixels[1])  # one chunk
        def strings(name):
            return [s.decode() if isinstance(s, bytes) else s for s in f[name][...]]
        assert strings("ids") == want["ids"], strings("ids")
        assert strings("labels") == want["labels"], strings("labels")
        assert len(strings("groups")) == n and len(strings("sources")) == n
        assert len(strings("datasets")) == n
        assert strings("rejected_sources") == want["rejected_sources"]
    print("ok")


if __name__ == "__main__":
    main(*sys.argv[1:4])
