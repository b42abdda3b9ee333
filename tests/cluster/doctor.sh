# shellcheck shell=bash
# shellcheck disable=SC2154 # work, daemon, halt, ctrl: one-node.sh's
# `kvmd doctor` in the one-node cluster (issue #19), sourced by
# one-node.sh at its end when ONE_NODE_DOCTOR names a kvmd binary to run
# as the doctor. Each scenario is made real through Ganeti's own tools,
# then the doctor runs as an operator would (no flags: it finds Ganeti's
# paths, and the running daemon's) and one line is printed:
#
#   RESULT doctor-<scenario> rc=<exit status> <check>[@<instance>]=<severity>...
#
# With Debian's daemon as ganeti-kvmd only "original" runs; with kvmd,
# the rest. tests/cluster.rs checks the lines.

# doctor SCENARIO CHECK...: runs the doctor once (--json), logs its
# findings as its text report would, prints the RESULT line with the
# exit status and each named check's severity (`-` when absent).
doctor() {
    local scenario=$1 rc=0
    shift
    local out=$work/doctor-$scenario.json
    timeout -s KILL 120 "$ONE_NODE_DOCTOR" doctor --json > "$out" || rc=$?
    python3 - "$out" "$scenario" "$rc" "$@" <<'PY'
import json, sys
path, scenario, rc, checks = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
try:
    report = json.load(open(path))
except ValueError as err:
    print("RESULT doctor-%s rc=%s json=invalid" % (scenario, rc))
    sys.exit(0)
for f in report["findings"]:
    line = "%-4s  %-22s  %s%s%s" % (
        f["severity"], f["check"],
        f["instance"] + ": " if f["instance"] else "", f["summary"],
        " → " + f["advice"] if f["advice"] else "")
    print("doctor-%s: %s" % (scenario, line), file=sys.stderr)
fields = ["rc=%s" % rc]
for check in checks:
    name, _, instance = check.partition("@")
    found = [f["severity"] for f in report["findings"]
             if f["check"] == name and (f["instance"] or "") == instance]
    fields.append("%s=%s" % (check, ",".join(found) or "-"))
print("RESULT doctor-%s %s" % (scenario, " ".join(fields)))
PY
}

# Until the daemon is connected to NAME.kvmd (as start() waits).
wait_attached() {
    local deadline=$((SECONDS + 20))
    until ss -xH state established | grep -qF "/ganeti/kvm-hypervisor/ctrl/$1.kvmd "; do
        if [ $SECONDS -ge $deadline ]; then
            log "the daemon did not attach to $1"
            return 0
        fi
        sleep 0.1
    done
}
wait_daemon() { # running|absent
    local deadline=$((SECONDS + 20)) now
    while :; do
        if daemon_pid > /dev/null; then now=running; else now=absent; fi
        [ "$now" = "$1" ] && return 0
        if [ $SECONDS -ge $deadline ]; then
            log "the daemon is $now, not $1"
            return 0
        fi
        sleep 0.2
    done
}

doctor_started=$SECONDS
if [ "$daemon" = original ]; then
    # Debian's daemon installed as Ganeti's, and running (restarted: the
    # one running is then the one installed): the doctor says so, and that
    # it is all that stands between this node and all ok.
    /usr/lib/ganeti/daemon-util stop ganeti-kvmd >&2 || true
    /usr/lib/ganeti/daemon-util start ganeti-kvmd >&2
    wait_daemon running
    doctor original ganeti.kvmd-binary daemon.running
else
    add doc "$halt"
    start doc
    doctor all-ok daemon.running ganeti.kvmd-binary ganeti.daemon-path \
        ganeti.user-shutdown instance.coverage@doc instance.hvparam@doc

    # The instance's own hypervisor parameter off: Ganeti would report its
    # user's shutdown as ERROR_down, whatever the daemon records.
    gnt-instance modify --ignore-ipolicy -H user_shutdown=false doc >&2
    doctor hvparam-off instance.hvparam@doc ganeti.hvparam
    gnt-instance modify --ignore-ipolicy -H user_shutdown=default doc >&2

    # The daemon not running.
    kill -TERM "$(daemon_pid)"
    wait_daemon absent
    doctor not-running daemon.running instance.coverage@doc
    /usr/lib/ganeti/daemon-util start ganeti-kvmd >&2
    wait_daemon running
    wait_attached doc

    # User shutdown off for the cluster (ssconf); Ganeti stops the daemon.
    gnt-cluster modify --user-shutdown=no >&2
    wait_daemon absent
    doctor ssconf-off ganeti.user-shutdown daemon.running

    # An instance started before both switches were set. Ganeti 3 gives
    # every QEMU its .kvmd socket whatever the switches say, and turning
    # user shutdown on starts the daemon, which picks the socket up: the
    # instance is covered without a restart.
    gnt-cluster modify -H kvm:user_shutdown=false >&2
    gnt-instance shutdown --timeout=0 doc >&2
    gnt-instance start doc >&2
    gnt-cluster modify --user-shutdown=yes -H kvm:user_shutdown=true >&2
    wait_daemon running
    wait_attached doc
    doctor started-before instance.coverage@doc ganeti.user-shutdown ganeti.hvparam

    # A QEMU whose socket is gone while it runs (a QEMU started without
    # one looks the same to the daemon): nobody can connect again, and
    # the doctor says to restart it; after the reboot it is covered.
    /usr/lib/ganeti/daemon-util stop ganeti-kvmd >&2
    rm -f "$ctrl/doc.kvmd"
    /usr/lib/ganeti/daemon-util start ganeti-kvmd >&2
    wait_daemon running
    doctor socket-lost instance.coverage@doc
    gnt-instance reboot --type=hard --shutdown-timeout=0 doc >&2
    wait_attached doc
    doctor rebooted instance.coverage@doc
    gnt-instance remove -f --shutdown-timeout=0 doc >&2
fi
log "the doctor's scenarios took $((SECONDS - doctor_started)) s"
