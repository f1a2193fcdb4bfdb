#!/usr/bin/env bash
# Tear down the test cluster started by slurm/cluster/up.sh.
#
#   slurm/cluster/down.sh           # stop the daemons up.sh started
#   slurm/cluster/down.sh --purge   # ... and delete the state directory
#
# Only daemons recorded in $S2H_SLURM_DIR/started are stopped, each by the
# pid in its pid file, so a cluster this script did not start is left alone.
# Jobs still queued or running on our controller are cancelled first, so no
# job processes outlive the cluster. Idempotent: safe to call repeatedly.
#
# Environment: S2H_SLURM_DIR (default /tmp/s2h-slurm), as for up.sh.
set -euo pipefail

STATE=${S2H_SLURM_DIR:-/tmp/s2h-slurm}
CONF=$STATE/etc/slurm.conf
SYSTEM_CONF=/etc/slurm/slurm.conf
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

log() { echo "[slurm down] $*" >&2; }

purge=0
case "${1:-}" in
    --purge) purge=1 ;;
    "") ;;
    *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac

# Print the pid in pid file $1 if it names a live process called $2.
live_pid() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && echo "$pid"
}

# True if up.sh recorded that it started daemon $1, and it is still alive.
started_and_alive() {
    local pidfile
    pidfile=$(recorded_pidfile "$1")
    [ -n "$pidfile" ] && live_pid "$pidfile" "$1" >/dev/null
}

# Pid file recorded for daemon $1 in $STATE/started (empty if none).
recorded_pidfile() {
    awk -v n="$1" '$1 == n {print $2}' "$STATE/started" | tail -n 1
}

# Stop the recorded daemons named in "$@" together, then forget them.
stop_group() {
    local name pidfile pid pids=() names=()
    for name in "$@"; do
        pidfile=$(recorded_pidfile "$name")
        [ -n "$pidfile" ] || continue
        if pid=$(live_pid "$pidfile" "$name"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid") names+=("$name")
        else
            log "$name not running"
        fi
    done
    local i
    for i in "${!pids[@]}"; do
        for _ in $(seq 100); do
            [ -d "/proc/${pids[$i]}" ] || break
            sleep 0.1
        done
        if [ -d "/proc/${pids[$i]}" ]; then
            log "${names[$i]} (pid ${pids[$i]}) ignored SIGTERM; sending SIGKILL"
            kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
        log "stopped ${names[$i]} (pid ${pids[$i]})"
    done
    # Forget them, so that a second down.sh does nothing.
    for name in "$@"; do
        awk -v n="$name" '$1 != n' "$STATE/started" >"$STATE/started.tmp"
        mv "$STATE/started.tmp" "$STATE/started"
    done
}

if [ ! -s "$STATE/started" ]; then
    log "no daemons recorded in $STATE/started; nothing to stop"
else
    # 1. Cancel all jobs while slurmctld and slurmd can still deliver the
    #    signals, and give them KillWait (5 s) plus some slack to finish.
    if started_and_alive slurmctld && started_and_alive slurmd; then
        export SLURM_CONF=$CONF
        jobs=$(timeout 10 squeue --noheader --format='%A' 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            log "cancelling $(wc -w <<<"$jobs") job(s)"
            # shellcheck disable=SC2086  # one id per word
            timeout 10 scancel $jobs 2>/dev/null || true
            for _ in $(seq 40); do
                # (without --states, squeue lists unfinished jobs only)
                left=$(timeout 10 squeue --noheader --format='%A' 2>/dev/null || true)
                [ -z "$left" ] && break
                sleep 0.5
            done
        fi
    fi

    # 2. Stop the daemons: SIGTERM to a group at once (each takes ~2 s to
    #    shut down), SIGKILL after 10 s. Dependents go first: slurmctld sends
    #    its last records to slurmdbd, which needs MariaDB; all need munged.
    stop_group slurmd slurmctld
    stop_group slurmdbd
    stop_group mariadbd munged
fi

# 3. Remove the copy of our slurm.conf that up.sh put in /etc/slurm, if it is
#    still ours, so plain client commands do not point at a dead cluster.
if [ -f "$SYSTEM_CONF" ] && [ -f "$CONF" ] && cmp -s "$SYSTEM_CONF" "$CONF"; then
    rm -f "$SYSTEM_CONF"
    log "removed $SYSTEM_CONF"
fi

if [ "$purge" -eq 1 ] && [ -d "$STATE" ]; then
    # Only delete something that looks like our state directory.
    if [ -e "$STATE/started" ] || [ -e "$STATE/etc/slurm.conf" ]; then
        rm -rf "$STATE"
        log "deleted $STATE"
    else
        log "$STATE does not look like an up.sh state directory; not deleting it"
    fi
fi
