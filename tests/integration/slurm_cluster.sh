#!/bin/sh
# A one-node Slurm cluster for tests: munged, slurmctld and slurmd started as
# plain background processes (no systemd, no cgroups) with every file under DIR.
#   slurm_cluster.sh start DIR    writes DIR/slurm.conf, starts the daemons, waits for the node
#   slurm_cluster.sh stop DIR     stops the daemons it started (by their pid files)
# Clients need SLURM_CONF=DIR/slurm.conf (start prints the export line).
set -eu
cmd=$1
dir=$(readlink -f "$2")
case "$cmd" in
start)
  mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2/1024*0.8)}' /proc/meminfo)
  chmod 700 "$dir/munge"
  if [ ! -f "$dir/munge/munge.key" ]; then
    dd if=/dev/urandom bs=1 count=1024 of="$dir/munge/munge.key" 2>/dev/null
    chmod 400 "$dir/munge/munge.key"
  fi
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
         --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
         --seed-file="$dir/munge/munge.seed"
  cat > "$dir/slurm.conf" <<CONF
ClusterName=m3rettest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$((16817 + $$ % 200 * 2))
SlurmdPort=$((16818 + $$ % 200 * 2))
AuthType=auth/munge
# A requeued job may start again cred_expire + 1 s later (default 120 s): shortened for tests.
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=20
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=10
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -i -f "$dir/slurm.conf" >"$dir/log/slurmctld.out" 2>&1
  slurmd -f "$dir/slurm.conf" >"$dir/log/slurmd.out" 2>&1
  i=0
  until sinfo -h -o %T 2>/dev/null | grep -q -E '^(idle|mixed|allocated)'; do
    i=$((i + 1))
    if [ $i -gt 60 ]; then
      echo "slurm_cluster: node did not become idle; see $dir/log" >&2
      sinfo >&2 || true
      exit 1
    fi
    sleep 1
  done
  echo "export SLURM_CONF=$dir/slurm.conf"
  ;;
stop)
  for p in slurmd slurmctld; do
    if [ -f "$dir/$p.pid" ]; then kill "$(cat "$dir/$p.pid")" 2>/dev/null || true; fi
  done
  sleep 1
  for p in slurmd slurmctld; do
    if [ -f "$dir/$p.pid" ]; then kill -9 "$(cat "$dir/$p.pid")" 2>/dev/null || true; rm -f "$dir/$p.pid"; fi
  done
  if [ -f "$dir/munge/munged.pid" ]; then kill "$(cat "$dir/munge/munged.pid")" 2>/dev/null || true; fi
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
