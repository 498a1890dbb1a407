#!/bin/bash
# 1 rank vs 2 nodes x 1 rank training throughput as Slurm jobs on a two-node
# cluster of this machine, against two independent 1-rank jobs (benchmark, not
# a test).
#
#   bash bench/multinode_scaling.sh BUILD_DIR [ROUNDS] [BENCH_TRAIN_ARGS...]
#
# Brings up `slurm/local-cluster.sh up --nodes 2` (needs root: each node is a
# network namespace with its own address, joined by a bridge; the file system is
# shared) and runs, per round, one after the other:
#   1. one job --nodes 1 --ntasks 1 on node1: `mpirun` of bench_train, 1 rank;
#   2. two independent such jobs at once, one on node1 and one on node2
#      (--nodelist; they wait for each other before starting bench_train): the
#      most two hosts of this machine could give, with no communication at all;
#   3. one job --nodes 2 --ntasks-per-node 1: 2 ranks, Open MPI between the two
#      hosts over TCP on the bridge (M3RET_MPI_TCP_IF, as slurm/pretrain.sbatch
#      sets it up), gradients all-reduced, overlapped with backward.
# The two nodes share this machine's cores: each node's ranks are pinned to a
# core of their own (node1 to core 0, node2 to core 1, as separate hosts would
# not share one), `mpirun --bind-to none` under that. Rounds are interleaved as
# in bench/rank_scaling.sh so that a slow spell of a shared machine hits every
# configuration alike. Prints every figure (bench_train's samples/s: over all
# ranks, from the slowest rank's step times), then per configuration the median
# over the rounds, and the ratios:
#   scaling    = 2 nodes / 1 rank           (target: >= 1.7)
#   ceiling    = 2 independent / 1 rank     (what this machine gives two hosts)
#   efficiency = 2 nodes / 2 independent   (what data parallelism over TCP costs)
# Defaults: 3 rounds of "small 10 8 112" (ViT-S MAE, 10 steps, 8 images of
# 112 x 112 per rank). The cluster's state (job scripts and outputs) lives in a
# temporary folder; the cluster is brought down, every job's processes with it,
# and the folder removed when the script ends, also on a failure or a signal
# (M3RET_KEEP_BENCH_DIR=1 keeps the folder).
set -euo pipefail
prog=multinode_scaling.sh
die() { echo "$prog: $*" >&2; exit 2; }
usage="usage: $prog BUILD_DIR [ROUNDS] [BENCH_TRAIN_ARGS...]"
[ $# -ge 1 ] || die "$usage"
build=$1
rounds=${2:-3}
shift $(( $# >= 2 ? 2 : 1 ))
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(small 10 8 112)
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS '$rounds' is not a positive number ($usage)"
[ "$(id -u)" = 0 ] || die "must run as root (slurm/local-cluster.sh makes network namespaces and runs slurmd)"
bench=$(readlink -m "$build/bench/bench_train")
[ -x "$bench" ] || die "no $bench (build the bench_train target)"
for t in sbatch scontrol scancel mpirun taskset; do
  command -v "$t" >/dev/null 2>&1 || die "'$t' is not installed (setup.sh installs slurm-wlm, munge, openmpi-bin)"
done
cluster=$(cd "$(dirname "$0")/.." && pwd)/slurm/local-cluster.sh
[ -x "$cluster" ] || die "no $cluster"

# The nodes share the file system except /tmp and /dev/shm: the state folder
# (job scripts, outputs) goes where they see it, beside a build under /tmp/TOP.
case "$bench" in
  /dev/shm/*) die "$bench is under /dev/shm, which each node has of its own: use a build elsewhere" ;;
  /tmp/?*/*) top=${bench#/tmp/}; base=/tmp/${top%%/*} ;;
  /tmp/*) die "$bench is directly in /tmp, which each node has of its own" ;;
  *) base=/var/tmp ;;
esac
dir=$(mktemp -d "$base/m3ret-multinode.XXXXXX")
state=$dir/cluster
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Only this cluster's jobs: SLURM_CONF is its own once `up` has answered.
  [ "${cluster_up:-0}" = 0 ] || scancel --full --quiet --user=root 2>/dev/null || true
  "$cluster" down --state "$state" >&2 || { echo "$prog: '$cluster down --state $state' failed" >&2; rc=1; }
  if [ -n "${k:-}" ] && ip netns list | grep -q "^m3rc$k-"; then
    echo "$prog: namespaces of the cluster left: $(ip netns list | grep "^m3rc$k-" | tr '\n' ' ')" >&2
    rc=1
  fi
  if [ "${M3RET_KEEP_BENCH_DIR:-0}" = 1 ]; then echo "$prog: kept $dir" >&2; else rm -rf "$dir"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "$prog: interrupted" >&2; exit 130' INT
trap 'echo "$prog: terminated" >&2; exit 143' TERM

# KEY=VALUE lines, SLURM_CONF last: Slurm's commands and the jobs (sbatch
# passes this environment on) reach the cluster; M3RET_MPI_TCP_IF is the bridge.
up=$("$cluster" up --nodes 2 --state "$state") || die "'$cluster up --nodes 2 --state $state' failed"
while IFS= read -r line; do
  [[ "$line" == *=* ]] || die "not KEY=VALUE from local-cluster.sh: $line"
  export "${line%%=*}=${line#*=}"
done <<<"$up"
[ "${SLURM_CONF:-}" = "$state/slurm.conf" ] || die "local-cluster.sh gave SLURM_CONF=${SLURM_CONF:-} (expected $state/slurm.conf)"
cluster_up=1
[ -n "${M3RET_MPI_TCP_IF:-}" ] || die "local-cluster.sh gave no M3RET_MPI_TCP_IF"
k=$(echo "$M3RET_MPI_TCP_IF" | sed -n 's/^10\.213\.\([0-9]*\)\.0\/24$/\1/p')
# The templates' interconnect setting only, as slurm/pretrain.sbatch: the job
# script turns M3RET_MPI_TCP_IF into Open MPI's settings itself.
unset OMPI_MCA_btl_tcp_if_include OMPI_MCA_oob_tcp_if_include

# The job: BARRIER WANT BENCH ARGS... Waits until WANT jobs of the same BARRIER
# have started (so that independent jobs run at the same time), then runs
# bench_train under mpirun on every rank of the allocation, each rank pinned to
# the core of its node (nodeN: core N-1).
job=$dir/bench_job.sh
cat >"$job" <<'JOB'
#!/bin/bash
set -eu
[ -z "${M3RET_MPI_TCP_IF:-}" ] ||
  export OMPI_MCA_btl_tcp_if_include="$M3RET_MPI_TCP_IF" OMPI_MCA_oob_tcp_if_include="$M3RET_MPI_TCP_IF"
export OMP_NUM_THREADS=1
barrier=$1 want=$2
shift 2
touch "$barrier.$SLURM_JOB_ID"
end=$((SECONDS + 120))
until [ "$(ls "$barrier".* | wc -l)" -ge "$want" ]; do
  [ $SECONDS -lt $end ] || { echo "bench_job: the other job did not start within 120 s" >&2; exit 1; }
  sleep 0.1
done
echo "bench_job: job $SLURM_JOB_ID on $SLURM_JOB_NODELIST, $(date -u +%T)"
# shellcheck disable=SC2016  # expanded on each node
exec mpirun --allow-run-as-root --bind-to none \
  sh -c 'n=$(hostname); n=${n#node}; exec taskset -c $(( (n - 1) % $(getconf _NPROCESSORS_ONLN) )) "$@"' sh "$@"
JOB
chmod +x "$job"

# submit NAME BARRIER WANT SBATCH_OPTIONS...: the job id.
submit() {
  local name=$1 barrier=$2 want=$3
  shift 3
  sbatch --parsable --job-name="m3ret-bench-$name" --time=00:20:00 --cpus-per-task=1 \
    --chdir="$dir" --output="$dir/job-%j.out" "$@" "$job" "$barrier" "$want" "$bench" "${args[@]}" |
    cut -d';' -f1
}
# finish ID...: waits for the jobs to end; fails, with their output, unless each completed.
finish() {
  local id end=$((SECONDS + 900))
  while [[ "$(for id in "$@"; do scontrol show job "$id" -o; done)" =~ \
    JobState=(PENDING|CONFIGURING|RUNNING|COMPLETING|SUSPENDED|REQUEUED)\  ]]; do
    [ $SECONDS -lt $end ] || { echo "$prog: jobs $* still running after 900 s" >&2; return 1; }
    sleep 1
  done
  for id in "$@"; do
    if ! scontrol show job "$id" -o | grep -q 'JobState=COMPLETED .*ExitCode=0:0'; then
      echo "$prog: job $id did not complete: $(scontrol show job "$id" -o | grep -o 'JobState=[A-Z_]*')" >&2
      cat "$dir/job-$id.out" >&2 || true
      return 1
    fi
  done
}
# line ID RANKS: bench_train's result line from job ID, which must be over RANKS ranks.
line() {
  local l
  l=$(grep '^ranks ' "$dir/job-$1.out" || true)
  [[ "$l" == "ranks $2 "* ]] || { echo "$prog: job $1 printed no result over $2 rank(s):" >&2; cat "$dir/job-$1.out" >&2; return 1; }
  echo "$l"
}
rate() { grep -o '[0-9.]* samples/s' | cut -d' ' -f1; }

one=() two=() indep=()
echo "cluster: 2 nodes, bridge $M3RET_MPI_TCP_IF; bench: ${args[*]}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) ($(date -u +%FT%TZ))"
for r in $(seq "$rounds"); do
  id=$(submit 1rank "$dir/b$r-a" 1 --nodes=1 --ntasks=1 --nodelist=node1)
  finish "$id"
  a=$(line "$id" 1 | rate)
  i1=$(submit indep1 "$dir/b$r-b" 2 --nodes=1 --ntasks=1 --nodelist=node1)
  i2=$(submit indep2 "$dir/b$r-b" 2 --nodes=1 --ntasks=1 --nodelist=node2)
  finish "$i1" "$i2"
  b0=$(line "$i1" 1 | rate) b1=$(line "$i2" 1 | rate)
  b=$(awk -v x="$b0" -v y="$b1" 'BEGIN {print x + y}')
  id=$(submit 2nodes "$dir/b$r-c" 1 --nodes=2 --ntasks-per-node=1)
  finish "$id"
  c_line=$(line "$id" 2)
  c=$(echo "$c_line" | rate)
  echo "round $r: 1 rank $a | 2 independent (node1 + node2) $b0 + $b1 = $b | 2 nodes x 1 rank $c (${c_line##*| })"
  one+=("$a") indep+=("$b") two+=("$c")
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg) ($(date -u +%FT%TZ))"
# shellcheck source=bench/scaling_summary.sh
source "$(dirname "$0")/scaling_summary.sh"
scaling_summary "2 nodes x 1 rank"
