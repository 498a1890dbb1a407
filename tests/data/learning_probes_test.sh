#!/usr/bin/env bash
# bench/learning_probes.sh on a small replica of the learning benchmark (4 patients per class):
# its table holds, per seed and probe, the recall@1 that the seed's report.json holds, the means
# over seeds and the chance row; summary.json counts, per probe and row, the seeds whose report
# put the probe above chance, and the script prints that table; a seed that is not a number and
# a stage that fails are refused, naming the seed or the stage.
#   bash tests/data/learning_probes_test.sh   (M3RET_BINARY, M3RET_SOURCE_DIR from CTest)
set -uo pipefail
src=${M3RET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${M3RET_BINARY:-$src/build/m3ret}
py=${M3RET_PYTHON:-python3}
script=$src/bench/learning_probes.sh
[ -x "$bin" ] || { echo "skip: no m3ret binary at $bin"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() {  # check DESCRIPTION COMMAND...
  if "${@:2}"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; fi
}

small=(--set synth.patients_per_class=4)
M3RET=$bin bash "$script" "$tmp/p" 3,4 "${small[@]}" > "$tmp/table.md" 2> "$tmp/err"
rc=$?
cat "$tmp/table.md"
check "two seeds: exit 0 (stderr: $(tail -n 5 "$tmp/err"))" test "$rc" -eq 0
check "the table matches the reports" "$py" - "$tmp/table.md" "$tmp/p" <<'PY'
import json, sys
table, out = sys.argv[1], sys.argv[2]
rows = [[c.strip() for c in l.strip().strip("|").split("|")] for l in open(table) if l.startswith("|")]
head, body = rows[0], rows[2:]
mods = head[2:-1]
assert mods == ["xray", "ultrasound", "endoscopy", "ct", "mri"], head
probes = ["random-init", "raw-pixels", "histogram"]
sums = {p: [0.0] * len(mods) for p in probes}
for seed in ["3", "4"]:
    enc = json.load(open(f"{out}/seed-{seed}/report.json"))["encoders"]
    for p in probes:
        row = [r for r in body if r[0] == seed and r[1] == p]
        assert len(row) == 1, (seed, p, body)
        want = [enc[p]["per_modality"][m]["recall@1"] for m in mods]
        got = [float(x) for x in row[0][2:-1]]
        assert all(abs(a - b) < 6e-4 for a, b in zip(got, want)), (seed, p, got, want)
        assert abs(float(row[0][-1]) - max(want)) < 6e-4, row
        sums[p] = [s + w for s, w in zip(sums[p], want)]
    chance = [enc[probes[0]]["per_modality"][m]["chance"]["recall@1"] for m in mods]
for p in probes:
    row = [r for r in body if r[0] == "mean" and r[1] == p]
    assert len(row) == 1, (p, body)
    assert all(abs(float(g) - s / 2) < 6e-4 for g, s in zip(row[0][2:-1], sums[p])), (p, row)
row = [r for r in body if r[1] == "chance"]
assert len(row) == 1 and all(abs(float(g) - c) < 6e-4 for g, c in zip(row[0][2:-1], chance)), row
assert all(0 < c < 1 for c in chance), chance
PY
check "the probe counts match the reports' own probe checks" "$py" - "$tmp/table.md" "$tmp/p" <<'PY'
import json, sys
table, out = open(sys.argv[1]).read(), sys.argv[2]
counts = json.load(open(f"{out}/summary.json"))["probe_checks"]["recall@1"]
assert sorted(counts) == ["histogram", "random-init", "raw-pixels"], counts
want = {}
for seed in ["3", "4"]:
    verdict = json.load(open(f"{out}/seed-{seed}/report.json"))["verdict"]
    assert verdict["k"] == 1, verdict["k"]
    for probe, check in verdict["probes"].items():
        for row in check["checked"]:
            c = want.setdefault(probe, {}).setdefault(row, [0, 0])
            c[0] += 1
            c[1] += row in check["above_chance"]
got = {p: {r: [c["checked"], c["above_chance"]] for r, c in rows.items()} for p, rows in counts.items()}
assert got == want, (got, want)
assert all(c[0] == 2 for rows in got.values() for c in rows.values()), got
assert "## Shortcut probes over seeds" in table, table
x = got["random-init"]["xray"][1], got["raw-pixels"]["xray"][1], got["histogram"]["xray"][1]
line = "| xray | %d of 2 | %d of 2 | %d of 2 |" % x
assert line in table.split("\n"), (line, table)
PY

M3RET=$bin bash "$script" "$tmp/q" 3,x4 > /dev/null 2> "$tmp/err"
rc=$?
check "a seed that is not a number: exit 2" test "$rc" -eq 2
check "... naming it" grep -q "seed 'x4'" "$tmp/err"
check "... before any stage runs" test ! -e "$tmp/q/seed-3"

M3RET=/bin/false bash "$script" "$tmp/r" 5 > /dev/null 2> "$tmp/err"
rc=$?
check "a failing stage: exit 1" test "$rc" -eq 1
check "... naming the stage and the seed" grep -q "seed 5: learning_quick.sh: synth failed" "$tmp/err"
exit $fail
