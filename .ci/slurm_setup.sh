#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the SLURM tests of the grid executor.
#
# Usage:  sudo .ci/slurm_setup.sh          install (if missing), configure and start munge, slurmctld, slurmd
#         sudo .ci/slurm_setup.sh stop     stop the three daemons this script started
#
# Idempotent: running it again keeps what is installed and running, and only starts what is missing.
# No systemd is needed: the daemons are started directly. Exits non-zero with a message when the
# cluster cannot come up (the daemons' logs are under /var/log/slurm and /var/log/munge).
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
RUN_DIR=/run/slurm
NODE=localhost
WAIT_S=${SLURM_SETUP_WAIT_S:-60}

die() { echo "slurm_setup: $*" >&2; exit 1; }
say() { echo "slurm_setup: $*"; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"

if [ "${1:-}" = "stop" ]; then
    # only our daemons, found by their pid files (never by name)
    for pidfile in $RUN_DIR/slurmd.pid $RUN_DIR/slurmctld.pid /run/munge/munged.pid; do
        if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            kill "$(cat "$pidfile")" && say "stopped $(basename "$pidfile" .pid)"
        fi
    done
    exit 0
fi

# --- install (only what is missing) -----------------------------------------------------------
missing=()
command -v munged >/dev/null || missing+=(munge)
command -v slurmctld >/dev/null || missing+=(slurmctld)
command -v slurmd >/dev/null || missing+=(slurmd)
command -v sbatch >/dev/null || missing+=(slurm-client)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
fi

# --- munge ------------------------------------------------------------------------------------
mkdir -p /etc/munge /var/log/munge /var/lib/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
fi
# munged refuses keys and directories that other users could read or write
chown -R munge:munge /etc/munge /var/log/munge /var/lib/munge /run/munge 2>/dev/null || true
chmod 0700 /etc/munge /var/log/munge /var/lib/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    if id munge >/dev/null 2>&1; then
        su -s /bin/sh munge -c "/usr/sbin/munged" || die "munged did not start (see /var/log/munge/munged.log)"
    else
        /usr/sbin/munged --force || die "munged did not start (see /var/log/munge/munged.log)"
    fi
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n | unmunge >/dev/null || die "munge does not work: $(munge -n 2>&1 | unmunge 2>&1 | tail -1)"
fi

# --- slurm.conf -------------------------------------------------------------------------------
mkdir -p "$CONF_DIR" "$LOG_DIR" "$STATE_DIR" "$SPOOL_DIR" "$RUN_DIR"
cpus=$(nproc)
# leave some memory to the system; SLURM only uses it to schedule
mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
conf=$(cat <<EOF
# written by .ci/slurm_setup.sh: a one-node cluster for tests
ClusterName=mip
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# no cgroups and no systemd here: track processes by their parents, bind no tasks
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
# a finished job stays visible to scontrol/squeue for a while (there is no accounting database)
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$conf" ]; then
    echo "$conf" > "$CONF"
    say "wrote $CONF"
    changed=1
else
    changed=0
fi
# an empty cgroup.conf keeps slurmd from looking for cgroup settings
[ -f "$CONF_DIR/cgroup.conf" ] || echo "# no cgroups (see slurm.conf)" > "$CONF_DIR/cgroup.conf"

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- daemons ----------------------------------------------------------------------------------
if [ "$changed" = 1 ]; then
    # a new configuration needs new daemons
    for pidfile in $RUN_DIR/slurmd.pid $RUN_DIR/slurmctld.pid; do
        running "$pidfile" && kill "$(cat "$pidfile")" && sleep 1
    done
fi
if ! running $RUN_DIR/slurmctld.pid; then
    say "starting slurmctld"
    /usr/sbin/slurmctld -c -i || die "slurmctld did not start: $(tail -3 $LOG_DIR/slurmctld.log 2>/dev/null)"
fi
if ! running $RUN_DIR/slurmd.pid; then
    say "starting slurmd"
    /usr/sbin/slurmd -N "$NODE" || die "slurmd did not start: $(tail -3 $LOG_DIR/slurmd.log 2>/dev/null)"
fi

# --- wait until the node takes jobs -----------------------------------------------------------
state=""
for _ in $(seq $((WAIT_S * 2))); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1 || true)
    case "$state" in
        idle|mixed|allocated) say "node $NODE is $state: SLURM is ready"; exit 0 ;;
        down*|drain*|fail*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
echo "--- slurmctld.log" >&2; tail -5 $LOG_DIR/slurmctld.log >&2 2>/dev/null || true
echo "--- slurmd.log" >&2; tail -5 $LOG_DIR/slurmd.log >&2 2>/dev/null || true
die "node $NODE did not become idle within ${WAIT_S}s (state: '${state:-no answer from sinfo}')"
