#!/usr/bin/env python3
"""Times a ViT-S-sized nn.TransformerEncoder step under a LibTorch / OpenBLAS thread split.

usage: /usr/bin/python3 bench/threads_split.py TORCH_THREADS OPENBLAS_THREADS
Prints the median of 5 forward+backward steps (8 x 50 tokens, 12 x 384) after 2 warm-ups.
Why it matters: docs/performance.md, "Threads".
"""
import ctypes
import sys
import time

import torch


def main():
    torch_threads, blas_threads = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(torch_threads)
    ctypes.CDLL("libblas.so.3").openblas_set_num_threads(blas_threads)  # needs OpenBLAS
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(384, 6, 1536, batch_first=True, norm_first=True)
    enc = torch.nn.TransformerEncoder(layer, 12)
    x = torch.randn(8, 50, 384)

    def step():
        enc.zero_grad()
        enc(x).square().mean().backward()

    for _ in range(2):
        step()
    ms = []
    for _ in range(5):
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1e3)
    ms.sort()
    print(f"torch {torch_threads} openblas {blas_threads}: {ms[2]:.0f} ms")


if __name__ == "__main__":
    main()
