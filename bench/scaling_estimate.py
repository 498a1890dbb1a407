#!/usr/bin/env python3
"""The arithmetic of docs/scaling.md: the plan for 867,653 samples.

    python3 bench/scaling_estimate.py [--json FILE]

Inputs are the figures measured by bench/scaling_plan.sh (MEASURED below,
with the date they were taken) and the stated assumptions (ASSUMED); override
any of them with a JSON file of the same keys. Prints the tables of
docs/scaling.md as markdown. No measurement happens here.
"""
import argparse
import json
import math

MEASURED = {
    # stored bytes per sample at paper-like sizes, deflate 4 (scaling_plan.sh sizes)
    # 2026-12-02 05:50 UTC, load average 3.8
    "stored_bytes": {"xray": 36514, "ultrasound": 18557, "endoscopy": 1256080, "ct": 21929},
    "raw_bytes": {"xray": 50176, "ultrasound": 50176, "endoscopy": 2408448, "ct": 65536},
    # sharding rows/s per core from clinical-size inputs (scaling_plan.sh clinical);
    # ultrasound: no clinical file, the X-ray rate stands in (see ASSUMED)
    # (2026-12-02 05:50 UTC, load average 3.6-4.3, 4 rows of one file each)
    "shard_rows_per_core": {"xray": 8.00, "ct": 0.80, "endoscopy": 5.71},
    # sharding: 2 ranks / 1 rank on this 2-core machine (scaling_plan.sh rows)
    # (200,000 rows, 2026-12-02 06:00 UTC, load average 3.9-4.3)
    "shard_rank_scaling_2": 2843.4 / 1422.0,
    # 2 ranks against two independent 1-rank processes (scaling_plan.sh ceiling, 50,000 rows:
    # 0.80 at load average 5.5, 0.96 at 2.7-5.1; the lower one)
    "shard_efficiency_vs_independent": 0.799,
    # loader samples/s of one worker core with the trainer's augmentations, per
    # modality (scaling_plan.sh loader: bench_loader_train, 1 worker)
    # (2026-12-02 06:07-06:11 UTC, load average 4.9-5.7)
    "loader_per_core": {"mae+simdino": {"xray": 219.0, "ultrasound": 285.8, "endoscopy": 6.6,
                                        "ct": 309.5},
                        "mae": {"xray": 893.0, "ultrasound": 916.8, "endoscopy": 19.1, "ct": 931.1}},
    # checkpoint: total parameters (MAE objective) and bytes per parameter in a checkpoint
    # (scaling_plan.sh checkpoint, 2026-12-02 06:06 UTC, load average 5.9; write rate: base,
    # the slowest of the three, 1.35 GB in 8.05 s into the page cache of a local disk)
    "params_total_mae": {"tiny": 31741440, "small": 48090624, "base": 112639488},
    "checkpoint_bytes_per_param": 381433220 / 31741440,
    "checkpoint_write_MBps": 1352210500 / 8.05 / 1e6,
    # forward GFLOPs per sample (`m3ret model --preset P --input T H W`): 2D at 1 x 224 x 224,
    # video at 16 x 224 x 224, CT at 16 x 64 x 64
    "gflops": {"tiny": {"2d": 2.56, "video": 40.27, "ct": 1.60},
               "small": {"2d": 9.31, "video": 113.86, "ct": 5.94},
               "base": {"2d": 35.36, "video": 360.97, "ct": 22.83},
               "large": {"2d": 123.42, "video": 1194.58, "ct": 79.95},
               "huge": {"2d": 255.01, "video": 2383.76, "ct": 165.55}},
    "encoder_params": {"tiny": 5634048, "small": 21884928, "base": 86237184,
                       "large": 303886336, "huge": 631649280},
}

ASSUMED = {
    "samples": 867653,
    # The paper does not split its 867,653 samples by modality in anything docs/ cites:
    # an assumed mix, 2D-heavy as public collections are.
    "mix": {"xray": 0.55, "ultrasound": 0.15, "endoscopy": 0.15, "ct": 0.15},
    "samples_per_shard": 64,
    # a DGX-H100-like node: 8 GPUs, 2 x 56 cores; 96 cores for loader workers (12 per GPU), the
    # rest for the trainer ranks and the system. Sharding uses all 112.
    "cores_per_node": 112,
    "loader_cores_per_gpu": 12,
    # anchor GPU: one H100 SXM, BF16 dense peak 989 TFLOP/s at a model FLOP
    # utilisation of 22 % (a published ViT-S/16 224^2 bf16 torch.compile
    # training figure on one H100: ~8,000 samples/s = 22.9 % MFU)
    "gpu_peak_tflops": 989.0,
    "gpu_mfu": 0.22,
    # an MAE step at 75 % masking costs about a third of a full-token step
    "mae_step_fraction": 1.0 / 3.0,
    "gpu_scaling_efficiency": 0.9,
}


def plan(m, a):
    out = []
    counts = {k: round(a["samples"] * f) for k, f in a["mix"].items()}
    counts["xray"] += a["samples"] - sum(counts.values())
    out.append("### Samples, bytes and shards\n")
    out.append("| modality | samples (assumed mix) | stored bytes/sample | total GB | raw GB | shards |")
    out.append("|---|---|---|---|---|---|")
    tot = raw = shards = 0
    for k, n in counts.items():
        b = m["stored_bytes"][k] * n
        r = m["raw_bytes"][k] * n
        s = math.ceil(n / a["samples_per_shard"])
        tot, raw, shards = tot + b, raw + r, shards + s
        out.append(f"| {k} | {n:,} | {m['stored_bytes'][k]:,.0f} | {b / 1e9:.1f} | {r / 1e9:.1f} | {s:,} |")
    out.append(f"| all | {a['samples']:,} | | {tot / 1e9:.1f} | {raw / 1e9:.1f} | {shards:,} |\n")

    rate = dict(m["shard_rows_per_core"])
    rate["ultrasound"] = rate["xray"]
    core_s = sum(counts[k] / rate[k] for k in counts)
    out.append("### Time to shard\n")
    out.append(f"Core-hours: {core_s / 3600:,.0f} ({', '.join(f'{k} {counts[k] / rate[k] / 3600:,.0f}' for k in counts)}).\n")
    eff = m["shard_efficiency_vs_independent"]
    out.append(f"| nodes ({a['cores_per_node']} cores each) | minutes (linear in cores) | minutes at {eff:.2f} of linear |")
    out.append("|---|---|---|")
    for nodes in (1, 2, 4, 8, 16):
        cores = nodes * a["cores_per_node"]
        mins = core_s / cores / 60
        out.append(f"| {nodes} | {mins:.0f} | {mins / eff:.0f} |")
    out.append("")

    kind = {"xray": "2d", "ultrasound": "2d", "endoscopy": "video", "ct": "ct"}
    mix = a["mix"]
    # seconds of one loader core per sample of the mix (a harmonic mean of the rates)
    core_per = {o: sum(mix[k] / r[k] for k in mix) for o, r in m["loader_per_core"].items()}
    out.append("### GPU throughput (anchor), loader cores, epoch time\n")
    out.append(f"Loader: one worker core supplies {1 / core_per['mae']:,.0f} samples/s of the mix with "
               f"the MAE views, {1 / core_per['mae+simdino']:,.0f} with MAE + SimDINO views.\n")
    lc = a["loader_cores_per_gpu"]
    out.append(f"| preset | mean forward GFLOPs per sample of the mix | full-token samples/s per GPU (anchor) | MAE samples/s per GPU (anchor) | loader cores per GPU to keep up: MAE | the same, MAE + SimDINO views at the full-token rate | MAE samples/s per GPU with {lc} loader cores | epoch, 1 node (8 GPUs) | 2 nodes | 4 nodes | 8 nodes (64 GPUs) |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for p, g in m["gflops"].items():
        flops = sum(mix[k] * g[kind[k]] for k in mix)
        full = a["gpu_peak_tflops"] * 1e12 * a["gpu_mfu"] / (3 * flops * 1e9)
        mae = full / a["mae_step_fraction"]
        fed = min(mae, lc / core_per["mae"])
        epochs = []
        for nodes in (1, 2, 4, 8):
            sec = a["samples"] / (fed * 8 * nodes * a["gpu_scaling_efficiency"])
            epochs.append(f"{sec / 60:.1f} min" if sec >= 120 else f"{sec:.0f} s")
        out.append(f"| {p} | {flops:.1f} | {full:,.0f} | {mae:,.0f} | {mae * core_per['mae']:.1f} | "
                   f"{full * core_per['mae+simdino']:.1f} | {fed:,.0f} | " + " | ".join(epochs) + " |")
    out.append("")

    out.append("### Checkpoints\n")
    out.append("| preset | parameters in the checkpoint (MAE) | checkpoint GB | write s at the measured rate |")
    out.append("|---|---|---|---|")
    dec = m["params_total_mae"]["tiny"] - m["encoder_params"]["tiny"]
    for p, e in m["encoder_params"].items():
        total = m["params_total_mae"].get(p) or e + dec  # + the MAE decoder (as measured on tiny)
        gb = total * m["checkpoint_bytes_per_param"] / 1e9
        out.append(f"| {p} | {total:,} | {gb:.2f} | {gb * 1e3 / m['checkpoint_write_MBps']:.1f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="a JSON file overriding MEASURED/ASSUMED keys")
    args = ap.parse_args()
    m, a = dict(MEASURED), dict(ASSUMED)
    if args.json:
        over = json.load(open(args.json))
        for k, v in over.items():
            (m if k in m else a)[k] = v
    print(plan(m, a))


if __name__ == "__main__":
    main()
