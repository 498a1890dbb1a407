#!/bin/bash
# A Slurm cluster of several hosts on this one machine, for tests and trials.
#
#   slurm/local-cluster.sh up --nodes N --state DIR [--cpus C]
#   slurm/local-cluster.sh up --loopback --state DIR
#   slurm/local-cluster.sh down --state DIR
#
# `up --nodes N` starts munged and slurmctld on this machine and N slurmd, each
# a host of its own: a network namespace (ip netns) joined by a veth pair to a
# private bridge, with its own address (10.213.K.11, .12, ...), host name and
# NodeName (node1, node2, ...), its own /tmp and /dev/shm (node-local, as on a
# real cluster), and the rest of the file system shared as a cluster shares its
# parallel file system. The bridge (10.213.K.1, the controller's address) gets
# the first free /24 of 10.213.0.0/16 that no route of this machine overlaps.
# Every file lives under DIR (not under /dev/shm; under /tmp, the folder
# /tmp/TOP that holds DIR stays shared with the nodes, the rest of their /tmp
# is their own); the machine's own Slurm configuration is never read or changed.
# `up --loopback` is one node: this host on 127.0.0.1, no namespaces.
#
# stdout of `up` is KEY=VALUE lines, SLURM_CONF=DIR/slurm.conf last, so that
#   export $(slurm/local-cluster.sh up --nodes 2 --state DIR)
# points Slurm's commands (and Open MPI, at the bridge) at the cluster; DIR/env
# holds the same as `export` lines. `up` on a running cluster prints them
# again; `down` stops every process of the cluster (the daemons and the jobs on
# its nodes) and removes its namespaces, links and bridge. Both are idempotent.
set -euo pipefail

prog=local-cluster.sh
die() { echo "$prog: $*" >&2; exit 1; }
usage() {
  echo "usage: $0 up --nodes N --state DIR [--cpus C] | up --loopback --state DIR | down --state DIR" >&2
  exit 2
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds; fails naming WHAT.
wait_for() {
  local secs=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + secs))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || { echo "$prog: timed out after ${secs}s waiting for $what" >&2; return 1; }
    sleep 0.2
  done
}

need_tools() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 ||
      die "'$t' is not installed (Debian: slurm-wlm, slurm-client, munge, iproute2, util-linux, mount)"
  done
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stops the process whose pid is in file $1 (TERM, then KILL after 10 s).
stop_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -TERM "$pid" 2>/dev/null; then
    wait_for 10 "pid $pid ($f) to exit" eval "! kill -0 $pid 2>/dev/null" || kill -KILL "$pid" 2>/dev/null || true
    wait_for 5 "pid $pid ($f) to die" eval "! kill -0 $pid 2>/dev/null" || true
  fi
  rm -f "$f"
}

# ---- configuration -----------------------------------------------------------

# slurm.conf for the cluster under $dir; $1 = SlurmctldHost value, $2 = ctld port,
# $3 = slurmd port, $4 = slurmd pid file; the node and partition lines on stdin.
write_conf() {
  cat > "$dir/slurm.conf" <<CONF
ClusterName=m3retlocal
SlurmctldHost=$1
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$2
SlurmdPort=$3
AuthType=auth/munge
# A requeued job may start again cred_expire + 1 s later (default 120 s): shortened for tests.
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=20
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$4
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# Scheduling passes every 2 s (default 30-60 s), so that a requeued job starts soon after its delay.
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=10
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
CONF
  cat >> "$dir/slurm.conf"
}

start_munge() {
  mkdir -p "$dir/munge"
  chmod 700 "$dir/munge"
  if [ ! -f "$dir/munge/munge.key" ]; then
    dd if=/dev/urandom bs=1 count=1024 of="$dir/munge/munge.key" 2>/dev/null
    chmod 400 "$dir/munge/munge.key"
  fi
  alive "$dir/munge/munged.pid" && return 0
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munge.seed"
}

# ---- the network -------------------------------------------------------------

# shellcheck disable=SC2086  # splits the address at the dots
ip2int() { local IFS=.; set -- $1; echo $(( ($1 << 24) | ($2 << 16) | ($3 << 8) | $4 )); }

# True when no IPv4 route or address of this machine overlaps 10.213.$1.0/24.
subnet_free() {
  local net=$(( $(ip2int "10.213.$1.0") )) dst a len m
  for dst in $(ip -4 route show table all | awk '{print $1}' | grep -E '^[0-9.]+(/[0-9]+)?$') \
             $(ip -4 -o addr show | awk '{print $4}'); do
    a=${dst%/*}; len=${dst#*/}; [ "$len" = "$dst" ] && len=32
    [ "$len" -gt 24 ] && m=24 || m=$len
    [ "$m" -eq 0 ] && continue  # a default route does not take the range
    local mask=$(( (0xffffffff << (32 - m)) & 0xffffffff ))
    [ $(( $(ip2int "$a") & mask )) -eq $(( net & mask )) ] && return 1
  done
  return 0
}

# Picks K (the first free subnet whose bridge m3rcK does not exist) by creating the bridge.
make_bridge() {
  local k
  for k in $(seq 0 255); do
    subnet_free "$k" || continue
    ip link add "m3rc$k" type bridge 2>/dev/null || continue
    echo "$k"
    return 0
  done
  die "no free 10.213.K.0/24 subnet and bridge name m3rcK left"
}

node_ns() { echo "m3rc$1-node$2"; }

# Starts slurmd of node $2 in its namespace (created with its veth pair when missing).
start_node() {
  local k=$1 i=$2 ns addr
  ns=$(node_ns "$k" "$i")
  addr=10.213.$k.$((10 + i))
  if ! ip netns list | grep -qw "$ns"; then
    ip netns add "$ns" || die "cannot create network namespace $ns (no netns support?)"
    ip link add "m3rc${k}v$i" type veth peer name eth0 netns "$ns"
    ip link set "m3rc${k}v$i" master "m3rc$k" up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" route add default via "10.213.$k.1"
  fi
  [ -n "$(ip netns pids "$ns")" ] && return 0  # slurmd (and maybe jobs) running
  mkdir -p "$dir/nodes/node$i/tmp" "$dir/spool/slurmd-node$i"
  chmod 1777 "$dir/nodes/node$i/tmp"
  # Own host name, /tmp, /dev/shm and /etc/hosts (mount namespace private to the
  # node). nsenter, not `ip netns exec`, which remounts /sys without the cgroup
  # file systems that slurmd looks for.
  # When DIR is under /tmp, the folder of /tmp that holds it (/tmp/TOP: a
  # checkout or build tree there) stays shared: it is bound into the node's own
  # /tmp before that replaces the machine's.
  local top=""
  case "$dir/" in /tmp/?*) top=${dir#/tmp/}; top=${top%%/*};; esac
  [ -z "$top" ] || mkdir -p "$dir/nodes/node$i/tmp/$top"
  # shellcheck disable=SC2016  # expanded by the node's shell
  nsenter --net="/run/netns/$ns" unshare --uts --mount sh -c '
    set -e
    hostname "$1"
    [ -z "$3" ] || mount --bind "/tmp/$3" "$2/nodes/$1/tmp/$3"
    mount --rbind "$2/nodes/$1/tmp" /tmp
    mount -t tmpfs -o mode=1777 tmpfs /dev/shm
    mount --bind "$2/hosts" /etc/hosts
    exec slurmd -f "$2/slurm.conf" >"$2/log/slurmd-$1.out" 2>&1' sh "node$i" "$dir" "$top"
}

idle_nodes() { sinfo -h -N -o '%N %T' 2>/dev/null | awk '$2 == "idle"' | sort -u | wc -l; }
all_idle() { [ "$(idle_nodes)" -ge "$1" ]; }

# ---- up / down ---------------------------------------------------------------

print_env() {
  sed -n 's/^export //p' "$dir/env"
}

healthy() {
  local i
  [ -f "$dir/cluster.env" ] || return 1
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  alive "$dir/munge/munged.pid" && alive "$dir/slurmctld.pid" || return 1
  if [ "$MODE" = loopback ]; then alive "$dir/slurmd.pid"; return; fi
  ip link show "m3rc$K" >/dev/null 2>&1 || return 1
  for i in $(seq 1 "${NODES:?}"); do
    [ -n "$(ip netns pids "$(node_ns "$K" "$i")" 2>/dev/null)" ] || return 1
  done
}

up_loopback() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2/1024*0.8)}' /proc/meminfo)
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  start_munge
  write_conf "$host(127.0.0.1)" $((16817 + $$ % 200 * 2)) $((16818 + $$ % 200 * 2)) "$dir/slurmd.pid" <<CONF
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  printf 'MODE=loopback\nNODES=1\n' > "$dir/cluster.env"
  echo "export SLURM_CONF=$dir/slurm.conf" > "$dir/env"
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -i -f "$dir/slurm.conf" >"$dir/log/slurmctld.out" 2>&1
  slurmd -f "$dir/slurm.conf" >"$dir/log/slurmd.out" 2>&1
}

up_nodes() {
  local n=$1 cpus=$2 k host mem i nodes=""
  ip netns list >/dev/null 2>&1 || die "'ip netns' does not work here (no network namespace support)"
  k=$(make_bridge)
  printf 'MODE=netns\nNODES=%s\nK=%s\n' "$n" "$k" > "$dir/cluster.env"
  ip addr add "10.213.$k.1/24" dev "m3rc$k"
  ip link set "m3rc$k" up
  host=$(hostname -s)
  mem=$(awk -v n="$n" '/MemTotal/ {print int($2/1024*0.8/n)}' /proc/meminfo)
  mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/nodes"
  start_munge
  { printf '127.0.0.1 localhost\n10.213.%s.1 %s\n' "$k" "$host"
    for i in $(seq 1 "$n"); do printf '10.213.%s.%s node%s\n' "$k" $((10 + i)) "$i"; done; } > "$dir/hosts"
  for i in $(seq 1 "$n"); do
    echo "NodeName=node$i NodeAddr=10.213.$k.$((10 + i)) NodeHostname=node$i CPUs=$cpus RealMemory=$mem State=UNKNOWN"
  done > "$dir/nodes.conf"
  # LLN: jobs go to the least loaded node, so that small jobs spread over the hosts.
  write_conf "$host(10.213.$k.1)" $((17300 + k)) 6818 /tmp/slurmd.pid <<CONF
$(cat "$dir/nodes.conf")
PartitionName=debug Nodes=node[1-$n] Default=YES MaxTime=INFINITE State=UP LLN=YES
CONF
  # Open MPI between the hosts on the bridge: M3RET_MPI_TCP_IF for the slurm/
  # templates, OMPI_MCA_* for mpirun by hand. SLURM_CONF last.
  { echo "export M3RET_MPI_TCP_IF=10.213.$k.0/24"
    echo "export OMPI_MCA_btl_tcp_if_include=10.213.$k.0/24"
    echo "export OMPI_MCA_oob_tcp_if_include=10.213.$k.0/24"
    echo "export SLURM_CONF=$dir/slurm.conf"; } > "$dir/env"
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -i -f "$dir/slurm.conf" >"$dir/log/slurmctld.out" 2>&1
  for i in $(seq 1 "$n"); do start_node "$k" "$i"; done
}

cmd_up() {
  local n=$1 loopback=$2 cpus=$3
  need_tools munged slurmctld slurmd sinfo scontrol
  if [ "$loopback" = 0 ]; then
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, mounts and slurmd need it)"
    need_tools ip nsenter unshare mount hostname
    case "$dir/" in /tmp/|/dev/shm/*)
      die "--state $dir is /tmp itself or under /dev/shm, which each node has of its own: use a shared folder";;
    esac
  fi
  [ $((${#dir} + 19)) -lt 108 ] || die "--state $dir is too long (its munge socket path must stay under 108 bytes)"
  if [ -f "$dir/cluster.env" ]; then
    local want=$n
    # shellcheck disable=SC1091
    . "$dir/cluster.env"
    [ "$loopback" = 1 ] && want=1
    local want_mode=netns
    [ "$loopback" = 1 ] && want_mode=loopback
    if [ "$NODES" != "$want" ] || [ "$MODE" != "$want_mode" ]; then
      die "$dir holds a cluster of $NODES node(s) ($MODE): run '$0 down --state $dir' first"
    fi
    if healthy; then print_env; return 0; fi
    echo "$prog: the cluster in $dir is not complete; restarting it" >&2
    cmd_down
  fi
  mkdir -p "$dir"
  if [ "$loopback" = 1 ]; then up_loopback; else up_nodes "$n" "$cpus"; fi
  export SLURM_CONF="$dir/slurm.conf"
  if ! wait_for 60 "$n idle node(s)" all_idle "$n"; then
    sinfo >&2 || true
    die "the nodes did not become idle; see $dir/log"
  fi
  print_env
}

cmd_down() {
  local i ns pids
  [ -f "$dir/cluster.env" ] || return 0
  # shellcheck disable=SC1091
  . "$dir/cluster.env"
  [ "$MODE" = loopback ] || [ "$(id -u)" = 0 ] || die "must run as root"
  if [ "$MODE" = netns ]; then
    for i in $(seq 1 "$NODES"); do
      ns=$(node_ns "$K" "$i")
      ip netns list | grep -qw "$ns" || continue
      # Every process on the node: slurmd, slurmstepd, the jobs.
      pids=$(ip netns pids "$ns")
      # shellcheck disable=SC2086  # one pid per word
      [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
      # shellcheck disable=SC2086  # one pid per word
      wait_for 10 "the processes of $ns to exit" eval "[ -z \"\$(ip netns pids $ns)\" ]" ||
        { pids=$(ip netns pids "$ns"); [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true; }
      wait_for 10 "the processes of $ns to die" eval "[ -z \"\$(ip netns pids $ns)\" ]" || true
      ip netns del "$ns"
    done
  else
    stop_pidfile "$dir/slurmd.pid"
  fi
  stop_pidfile "$dir/slurmctld.pid"
  stop_pidfile "$dir/munge/munged.pid"
  if [ "$MODE" = netns ]; then
    for i in $(seq 1 "$NODES"); do ip link del "m3rc${K}v$i" 2>/dev/null || true; done
    ip link del "m3rc$K" 2>/dev/null || true
  fi
  rm -f "$dir/cluster.env"
}

[ $# -ge 1 ] || usage
verb=$1
shift
nodes="" loopback=0 cpus="" dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) [ $# -ge 2 ] || usage; nodes=$2; shift 2 ;;
    --state) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
    --cpus) [ $# -ge 2 ] || usage; cpus=$2; shift 2 ;;
    --loopback) loopback=1; shift ;;
    *) echo "$prog: unknown option '$1'" >&2; usage ;;
  esac
done
[ -n "$dir" ] || { echo "$prog: --state DIR is required" >&2; usage; }
dir=$(readlink -m "$dir")
case "$verb" in
  up)
    if [ "$loopback" = 0 ]; then
      [ -n "$nodes" ] || { echo "$prog: up needs --nodes N (or --loopback)" >&2; usage; }
      if ! [[ "$nodes" =~ ^[1-9][0-9]?$ ]] || [ "$nodes" -gt 64 ]; then
        die "--nodes '$nodes' is not a number from 1 to 64"
      fi
    fi
    cpus=${cpus:-$(nproc)}
    [[ "$cpus" =~ ^[1-9][0-9]*$ ]] || die "--cpus '$cpus' is not a positive number"
    cmd_up "${nodes:-1}" "$loopback" "$cpus" ;;
  down) cmd_down ;;
  *) echo "$prog: unknown command '$verb'" >&2; usage ;;
esac
