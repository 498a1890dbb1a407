#!/usr/bin/env python3
"""What two cores give two independent compute-bound processes (benchmark, not a test).

usage: /usr/bin/python3 bench/gemm_pair.py
Times 1024 x 1024 float32 matrix products on one thread (torch, OpenBLAS) pinned
to core 0 alone, then in two processes at once pinned to cores 0 and 1, and
prints the GFLOP/s of each and the ratio (both together / one alone). No
memory-bound work and no communication: on an ideal 2-core machine the ratio is
2.0; below that, the cores share something (SMT siblings on the host, clocks,
the hypervisor), and no 2-rank training can scale past it.
"""
import os
import subprocess
import sys
import time


def child():
    import torch
    torch.set_num_threads(1)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    n = 80
    t = time.perf_counter()
    for _ in range(n):
        a @ b
    print(2 * 1024 ** 3 * n / (time.perf_counter() - t) / 1e9)


def run(cores):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(["taskset", "-c", str(c), sys.executable, __file__, "--child"],
                              stdout=subprocess.PIPE, text=True, env=env) for c in cores]
    return [float(p.communicate()[0]) for p in procs]


def main():
    if sys.argv[1:] == ["--child"]:
        return child()
    alone = run([0])[0]
    pair = run([0, 1])
    print(f"one process alone {alone:.1f} GFLOP/s | two at once {pair[0]:.1f} + {pair[1]:.1f} = "
          f"{sum(pair):.1f} GFLOP/s | ratio {sum(pair) / alone:.3f}")


if __name__ == "__main__":
    main()
