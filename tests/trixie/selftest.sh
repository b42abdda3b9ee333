#!/usr/bin/env bash
# Checks root.sh and enter.sh themselves: that the root has what the tests
# count on, that a command inside gets its status, stdin and environment
# through, and that the host is left as it was (mounts, processes, the
# cgroup, the cached root), a run cut off by SIGTERM and by the time limit
# included. With E2E (a test binary, e.g. the e2e one), runs it inside
# under CI=true too. Prints one line per check; exits non-zero on the
# first failure.
#
#   tests/trixie/selftest.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd -P)
enter=$here/enter.sh

ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

started=$SECONDS
root=$("$here/root.sh")
ok "root $root ($((SECONDS - started)) s)"
work=$(mktemp -d /dev/shm/kvmd-trixie-selftest.XXXXXX)
trap 'rm -rf "$work"' EXIT

# What the host looks like, for the comparisons after each run: its mount
# table, enter.sh's cgroups, the processes marked with $marker (the
# commands below start sleep and QEMU with it), its staging directories,
# and the cached root (names, types, modes, sizes, times).
marker=4242.$$
snapshot() {
    cut -d' ' -f1-10 /proc/self/mountinfo
    find /sys/fs/cgroup/ -maxdepth 2 -name 'kvmd-test-enter.*' 2>/dev/null || true
    pgrep -af "^(sleep|qemu-system-x86_64) .*$marker" || true
    find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'kvmd-test-enter.*' || true
    find "$root" -xdev -printf '%p %y %m %s %T@ %C@ %l\n' | sort | sha256sum
}
before=$(snapshot)
same() {
    local after
    after=$(snapshot)
    [ "$before" = "$after" ] || fail "$1: the host changed: $(diff <(echo "$before") <(echo "$after"))"
    ok "$1: host unchanged"
}

inside() { "$enter" "$root" "$work" -- "$@"; }
version=$(inside qemu-system-x86_64 --version | head -1)
case "$version" in *" version 10.0."*) ok "$version" ;; *) fail "QEMU: $version" ;; esac
inside test -x /usr/lib/ganeti/3.1/usr/sbin/ganeti-kvmd || fail "no ganeti-kvmd 3.1"
ok "ganeti-kvmd 3.1"
ok "$(inside lintian --version)"
[ "$(echo in | inside cat)" = in ] || fail "stdin"
ok "stdin"
set +e
inside sh -c 'touch /etc/kvmd-test /usr/bin/kvmd-test; exit 7'
rc=$?
set -e
[ "$rc" = 7 ] || fail "exit status $rc, not 7"
[ ! -e "$root/etc/kvmd-test" ] || fail "the root was written"
ok "exit status"
env=$(FOO=1 BAR=2 ENTER_ENV=FOO CI=true inside env | sort | tr '\n' ' ')
expected="CI=true FOO=1 HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin "
[ "$env" = "$expected${RUST_BACKTRACE+RUST_BACKTRACE=$RUST_BACKTRACE }" ] ||
    fail "environment: $env"
ok "environment"
[ "$(inside cat /proc/1/comm)" != systemd ] || fail "the host's PID 1 is visible"
[ "$(inside sh -c 'ls /sys/class/net')" = lo ] || fail "network namespace"
ok "namespaces"
same "runs"

# Something that lingers: a QEMU guest daemonized (reparented to PID 1
# inside), a process in a session of its own, a plain child.
lingering="sleep $marker & setsid sleep $marker & \
qemu-system-x86_64 -display none -S -daemonize -pidfile /tmp/qemu.pid -name kvmd-test-$marker && \
sleep $marker"
# SIGTERM to enter.sh running $1: it must exit 143, and leave the host so.
cut_off() {
    kill -TERM "$1"
    set +e
    wait "$1"
    local rc=$?
    set -e
    [ "$rc" = 143 ] || fail "SIGTERM: exit status $rc, not 143"
    same "$2"
}

"$enter" "$root" "$work" -- sh -c "$lingering" &
pid=$!
deadline=$((SECONDS + 60))
until [ "$(pgrep -fc "^(sleep|qemu-system-x86_64) .*$marker")" = 4 ]; do
    [ $SECONDS -lt $deadline ] || fail "the lingering processes did not start"
    sleep 0.1
done
cut_off "$pid" "SIGTERM"

set +e
ENTER_TIMEOUT=3 "$enter" "$root" "$work" -- sh -c "$lingering" 2> /dev/null
rc=$?
set -e
[ "$rc" = 124 ] || fail "time limit: exit status $rc, not 124"
same "time limit"

if [ -n "${E2E:-}" ]; then
    CI=true inside "$E2E"
    same "$E2E"
    # And cut off midway, its guests running.
    CI=true "$enter" "$root" "$work" -- "$E2E" > /dev/null 2>&1 &
    pid=$!
    # Midway: once its first guest runs.
    deadline=$((SECONDS + 60))
    until pgrep -f '(^|/)qemu-system-x86_64 ' > /dev/null; do
        [ $SECONDS -lt $deadline ] || fail "the e2e run started no guest"
        sleep 0.05
    done
    cut_off "$pid" "$E2E, SIGTERM"
fi
