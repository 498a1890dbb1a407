#!/bin/sh
# Stands in for the m3ret binary in the Slurm orchestration test: the CLI
# forms of DESIGN.md with what they leave on disk (manifest, shard index,
# checkpoints one by one, embeddings, retrieval report), in seconds. `train`
# honours SIGUSR1 like the trainer: checkpoint, exit 75. Every start is
# appended to $FAKE_M3RET_LOG as "VERB ARGS | job=JOB" (JOB: the basename of
# $M3RET_JOB_DIR, which the orchestrator's job wrapper sets) so the test can
# count runs per job. FAKE_M3RET_FAIL=VERB makes that verb exit 1.
set -u
verb=$1
shift
echo "$verb $* | job=$(basename "${M3RET_JOB_DIR:-none}")" >> "${FAKE_M3RET_LOG:-/dev/null}"
if [ "${FAKE_M3RET_FAIL:-}" = "$verb" ]; then
  echo "fake m3ret: $verb fails (FAKE_M3RET_FAIL)" >&2
  exit 1
fi
arg() { # value after flag $1 in the remaining arguments
  flag=$1; shift
  while [ $# -gt 0 ]; do
    if [ "$1" = "$flag" ]; then echo "$2"; return; fi
    shift
  done
}
case "$verb" in
synth)
  out=$(arg --out "$@"); mkdir -p "$out"
  echo "path,modality,labels,group,split" > "$out/manifest.csv" ;;
shard)
  out=$(arg --out "$@"); mkdir -p "$out"; sleep 1
  echo '{"format": "fake"}' > "$out/index.json" ;;
train)
  run=$(arg --run-dir "$@"); mkdir -p "$run/checkpoints"
  stop=0
  trap 'stop=1' USR1
  for step in 1 2 3; do
    ck="$run/checkpoints/step-00000000$step"
    [ -d "$ck" ] && continue
    sleep 2
    mkdir -p "$run/checkpoints/.tmp-$step" && echo '{}' > "$run/checkpoints/.tmp-$step/manifest.json"
    mv "$run/checkpoints/.tmp-$step" "$ck"
    if [ $stop = 1 ]; then exit 75; fi
  done ;;
embed)
  out=$(arg --out "$@"); mkdir -p "$(dirname "$out")"; echo fake > "$out" ;;
eval)
  out=$(arg --out "$@")
  cat > "$out" <<JSON
{"format": "m3ret-retrieval-report", "format_version": 1, "ks": [1], "split": "test",
 "relevance": "shared-label", "samples": 8,
 "embeddings": {"checkpoint": "fake", "step": 0, "random_init": false},
 "per_modality": {
  "xray": {"queries": 4, "skipped_no_label": 0, "skipped_no_relevant": 0, "gallery": 4,
           "recall@1": 0.5, "precision@1": 0.5, "map@1": 0.5},
  "ct": {"queries": 4, "skipped_no_label": 0, "skipped_no_relevant": 0, "gallery": 4,
         "recall@1": 0.25, "precision@1": 0.25, "map@1": 0.25}},
 "cross_modal": {}}
JSON
  ;;
*) echo "fake m3ret: unknown verb $verb" >&2; exit 2 ;;
esac
