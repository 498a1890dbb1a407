#!/bin/sh
# A one-node Slurm cluster for tests: this host on 127.0.0.1, munged, slurmctld
# and slurmd as plain background processes (no systemd, no cgroups), every file
# under DIR. slurm/local-cluster.sh --loopback does the work (docs/slurm.md).
#   slurm_cluster.sh start DIR    writes DIR/slurm.conf, starts the daemons, waits for the node
#   slurm_cluster.sh stop DIR     stops the daemons it started
# Clients need SLURM_CONF=DIR/slurm.conf (start prints it last).
set -eu
cluster="$(dirname "$(readlink -f "$0")")/../../slurm/local-cluster.sh"
case "${1:-}" in
start) exec "$cluster" up --loopback --state "$2" ;;
stop) exec "$cluster" down --state "$2" ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
