#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the cluster tests (tests/cluster/) and for trying
# hydra/launcher=slurm without a real cluster (docs/scaling.md).
#
#   scripts/slurm_cluster.sh up       # install slurm-wlm + munge if missing (root + apt), start, wait until idle
#   scripts/slurm_cluster.sh status   # exit 0 when the node answers, 3 when the cluster is down
#   scripts/slurm_cluster.sh env      # the line to eval: export SLURM_CONF=<state dir>/slurm.conf
#   scripts/slurm_cluster.sh down     # cancel its jobs, end the daemons it started (and only those)
#
# Everything lives in one state folder it owns ($MARGINLOSS_SLURM_DIR, default /tmp/marginloss-slurm):
# slurm.conf, the munge key and socket, the daemons' state, logs and PID files. Clients find this
# cluster through SLURM_CONF (`eval "$(scripts/slurm_cluster.sh env)"`); /etc/slurm is never touched.
# `up` and `down` are idempotent. No accounting daemon: `sacct` answers "accounting storage is
# disabled", and the repo's SLURM launcher follows jobs with squeue instead (docs/scaling.md).
set -euo pipefail

STATE=${MARGINLOSS_SLURM_DIR:-/tmp/marginloss-slurm}
CONF=$STATE/slurm.conf
MUNGE_DIR=$STATE/munge
SOCKET=$MUNGE_DIR/munge.socket
CTLD_PORT=${MARGINLOSS_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${MARGINLOSS_SLURMD_PORT:-6818}
WAIT_S=${MARGINLOSS_SLURM_WAIT_S:-60}
export SLURM_CONF=$CONF

say() { echo "slurm_cluster: $*" >&2; }

have_binaries() {
    command -v munged >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sinfo >/dev/null && command -v sbatch >/dev/null
}

install_packages() {
    if have_binaries; then return 0; fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        say "slurm-wlm and munge are not installed and this is not root with apt-get: install them" \
            "(apt-get install slurm-wlm munge) or run as root"
        return 1
    fi
    say "installing slurm-wlm and munge (apt-get)"
    # No service is started by the packages' scripts: this script starts its own daemons.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1; fi
    local rc=0
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge >"$STATE/apt.log" 2>&1 ||
        { apt-get update -q >>"$STATE/apt.log" 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$STATE/apt.log" 2>&1; }; } || rc=$?
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
    if [ "$rc" != 0 ] || ! have_binaries; then say "apt-get failed (see $STATE/apt.log)"; return 1; fi
}

# The PID recorded in $STATE/<name>.pid when that process is alive and is the named daemon.
live_pid() {
    local name=$1 file=$STATE/$1.pid pid
    [ -f "$file" ] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name" || return 1
    echo "$pid"
}

node_answers() {
    # The node is usable once it is idle, or busy with jobs (mixed / allocated).
    local state
    state=$(timeout 10 sinfo --noheader --format=%T 2>/dev/null | head -1) || return 1
    case "$state" in idle* | mix* | alloc* | comp*) return 0 ;; *) return 1 ;; esac
}

is_up() {
    [ -f "$CONF" ] && live_pid munged >/dev/null && live_pid slurmctld >/dev/null && live_pid slurmd >/dev/null &&
        node_answers
}

write_conf() {
    local host cpus sockets cores threads mem_mb
    host=$(hostname -s)
    # lscpu's count of the CPUs this node has, and their layout, so slurmd registers without a mismatch.
    cpus=$(lscpu --parse=CPU | grep -vc '^#')
    sockets=$(lscpu --parse=SOCKET | grep -v '^#' | sort -u | wc -l)
    cores=$(lscpu --parse=CORE | grep -v '^#' | sort -u | wc -l)
    threads=$((cpus / cores))
    cores=$((cores / sockets))
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024) - 1024}' /proc/meminfo)
    cat >"$CONF" <<EOF
# Written by scripts/slurm_cluster.sh: one node, this machine ($cpus CPUs as lscpu counts them).
ClusterName=marginloss
SlurmctldHost=$host
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$SOCKET,cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# No accounting daemon (slurmdbd needs a database): sacct is unavailable, squeue knows the jobs.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# A finished job stays visible to squeue for 10 minutes (the launcher reads its end state there).
MinJobAge=600
# SIGTERM, then SIGKILL 10 s later: the time a run has to save last.ckpt when cancelled or preempted.
KillWait=10
JobRequeue=1
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host CPUs=$cpus Sockets=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if live_pid munged >/dev/null; then return 0; fi
    mkdir -p "$MUNGE_DIR"
    if [ ! -s "$MUNGE_DIR/munge.key" ]; then
        dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
    fi
    chown -R munge:munge "$MUNGE_DIR"
    chmod 0755 "$MUNGE_DIR"  # clients (sinfo, sbatch, the jobs) must reach the socket
    chmod 0400 "$MUNGE_DIR/munge.key"
    # munged refuses a key or socket below a world-writable folder (/tmp) unless forced.
    runuser -u munge -- munged --force --key-file="$MUNGE_DIR/munge.key" --socket="$SOCKET" \
        --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed"
    for _ in $(seq 50); do [ -s "$MUNGE_DIR/munged.pid" ] && [ -S "$SOCKET" ] && break; sleep 0.1; done
    cp "$MUNGE_DIR/munged.pid" "$STATE/munged.pid"
    live_pid munged >/dev/null || { say "munged did not start (see $MUNGE_DIR/munged.log)"; return 1; }
    munge -n -S "$SOCKET" | unmunge -S "$SOCKET" >/dev/null || { say "munge does not answer on $SOCKET"; return 1; }
}

start_daemon() {
    local name=$1
    if live_pid "$name" >/dev/null; then return 0; fi
    rm -f "$STATE/$name.pid"
    "$name" -f "$CONF" || { say "$name did not start (see $STATE/$name.log)"; return 1; }
    for _ in $(seq 50); do live_pid "$name" >/dev/null && return 0; sleep 0.1; done
    say "$name did not write its PID file (see $STATE/$name.log)"
    return 1
}

up() {
    mkdir -p "$STATE"
    if is_up; then say "already up: $(sinfo --noheader --format='%N %T %c CPUs' | head -1)"; return 0; fi
    install_packages
    local t0=$SECONDS
    if ! live_pid slurmctld >/dev/null; then
        rm -rf "$STATE/ctld"  # a fresh controller: no job of an earlier session comes back
        write_conf
    fi
    mkdir -p "$STATE/ctld" "$STATE/spool"
    start_munge
    start_daemon slurmctld
    start_daemon slurmd
    local deadline=$((SECONDS + WAIT_S))
    until node_answers; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "the node is not idle after ${WAIT_S} s: $(sinfo --noheader 2>&1 | head -2)"
            return 1
        fi
        # A node left down or drained (an earlier session's state) is put back in service.
        if sinfo --noheader --format=%T 2>/dev/null | grep -qE 'down|drain'; then
            scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        fi
        sleep 0.5
    done
    say "up in $((SECONDS - t0)) s: $(sinfo --noheader --format='%P %N %T %c CPUs' | head -1); SLURM_CONF=$CONF"
}

down() {
    if live_pid slurmctld >/dev/null; then
        # Jobs first, so that no job step outlives the daemons that would clean it up.
        local jobs
        jobs=$(timeout 10 squeue --noheader --format=%A 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 40); do [ -z "$(timeout 10 squeue --noheader --states=running,completing 2>/dev/null)" ] && break; sleep 0.5; done
        fi
    fi
    local name pid
    for name in slurmd slurmctld munged; do
        pid=$(live_pid "$name") || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
        rm -f "$STATE/$name.pid"
    done
    say "down (state and logs kept in $STATE)"
}

status() {
    if is_up; then
        sinfo
        echo "SLURM_CONF=$CONF"
        return 0
    fi
    say "not up (state folder $STATE)"
    return 3
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
