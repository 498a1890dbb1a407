#!/usr/bin/env python3
"""PyTorch-eager side of bench_model: the same MAE step on the same weights.

usage: bench_model_reference.py WEIGHTS INPUTS THREADS ITERS GOLDEN_DIR
WEIGHTS/INPUTS are the safetensors files bench_model wrote; the model is
tests/model/golden_reference.py's (torch.nn.functional, no m3ret code).
Prints the median milliseconds of one forward+backward step (2 warm-up steps).

With BENCH_PY_SPLIT=1 in the environment, PyTorch gets m3ret's thread split
(core/blas_threads.h): torch.set_num_threads(1) and OpenBLAS THREADS threads;
otherwise torch.set_num_threads(THREADS) as a Python user would write it.
"""
import ctypes
import os
import sys
import time

import torch


def main():
    weights, inputs, threads, iters, golden_dir = sys.argv[1:6]
    if os.environ.get("BENCH_PY_SPLIT") == "1":
        torch.set_num_threads(1)
        ctypes.CDLL("libblas.so.3").openblas_set_num_threads(int(threads))
    else:
        torch.set_num_threads(int(threads))
    sys.path.insert(0, golden_dir)
    import golden_reference as ref

    P, meta = ref.load_safetensors(weights)
    I, _ = ref.load_safetensors(inputs)
    for p in P.values():
        p.requires_grad_(True)
    m = ref.Model(P, meta)

    def step():
        for p in P.values():
            p.grad = None
        m.mae_loss(I["x"], I["keep"]).backward()

    for _ in range(2):
        step()
    ms = []
    for _ in range(int(iters)):
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1e3)
    ms.sort()
    print(ms[len(ms) // 2])


if __name__ == "__main__":
    main()
