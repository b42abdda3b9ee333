#!/usr/bin/env bash
# Boots this machine's systemd as PID 1 of private PID, mount, UTS, IPC,
# network and cgroup namespaces, on a throwaway root (a tmpfs overlay over
# this machine's /), runs a check script inside, and takes it all down.
# tests/package.rs uses it to start the installed kvmd.service under real
# systemd, its sandbox and all, on a machine whose PID 1 is not systemd.
#
#   boot.sh WORK CHECKS [ARGS...]
#
# WORK, a host directory, is /kvmd-test inside. CHECKS is copied there and
# run as `bash /kvmd-test/checks.sh ARGS...` in every namespace (nsenter);
# its output and exit status are this script's. WORK also gets console.log
# (systemd's console) and journal.txt. Checks that power the system off
# touch WORK/powering-off first: boot.sh then waits for systemd to finish
# (there is no journal to save afterwards).
#
# Meant to leave the host as it was, for well-behaved code inside (this is
# a test bed, not a security boundary: everything inside is root with
# CAP_SYS_ADMIN): every file write lands in the overlay's tmpfs; /proc/sys
# and /sys are mounted read-only inside (systemd would otherwise set
# kernel-wide knobs: core_pattern, fs.file-max); generators and the units
# that touch the kernel or start the host's servers are masked; the
# capabilities to load modules, set the clock, do raw I/O or reboot are
# dropped, for systemd and for the checks alike. Bounded in time:
# BOOT_TIMEOUT (default 120 s) for the whole run; whatever happens, every
# process inside is killed (cgroup.kill) and the cgroup removed.
set -euo pipefail
# shellcheck source=tests/lib/mounts.sh
. "$(dirname "$0")/../lib/mounts.sh"
DROPPED=-sys_module,-sys_time,-sys_rawio,-sys_boot,-syslog,-wake_alarm

if [ "${1:-}" = --pid1 ]; then
    # --- Inside: PID 1 of the new PID namespace, in the private mount
    # namespace. Becomes systemd.
    work=$2 cg=$3
    if [ -z "${KVMD_TEST_CGROUP_NS:-}" ]; then
        # Alone in a cgroup of our own, made the root of a new cgroup
        # namespace: systemd builds its tree there, not at the host's root.
        echo 0 > "$cg/cgroup.procs"
        KVMD_TEST_CGROUP_NS=1 exec unshare --cgroup "$0" "$@"
    fi
    # The host's PID of this process, for the outside to nsenter.
    # (Read by the shell itself: /proc/self is whoever opens it.)
    while read -r key host _; do
        if [ "$key" = NSpid: ]; then echo "$host" > "$work/pid1.tmp"; fi
    done < /proc/self/status
    mv "$work/pid1.tmp" "$work/pid1"
    console=$(tty)
    upper=$work/upper root=$work/root
    mount -t tmpfs -o mode=755,size=256m kvmd-test-upper "$upper"
    mkdir "$upper/u" "$upper/w"
    mount -t overlay kvmd-test-root -o "lowerdir=/,upperdir=$upper/u,workdir=$upper/w" "$root"
    mkdir "$root/kvmd-test"
    mount --bind "$work" "$root/kvmd-test"

    units=$root/etc/systemd/system
    printf '[Unit]\nDescription=kvmd test: nothing but what the checks start\n' \
        > "$units/kvmd-test.target"
    mkdir -p "$root/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\n' > "$root/etc/systemd/journald.conf.d/volatile.conf"
    systemd-id128 new > "$root/etc/machine-id"
    echo kvmd-test > "$root/etc/hostname"
    # The host's enabled units stay out (multi-user.target's wants stay:
    # `systemctl is-enabled` reads them, and nothing pulls that target).
    find "$units" -maxdepth 1 -name '*.wants' ! -name multi-user.target.wants \
        -exec rm -rf {} +
    mkdir -p "$root/etc/systemd/system-generators"
    for generator in /lib/systemd/system-generators/* /usr/lib/systemd/system-generators/*; do
        [ -e "$generator" ] || continue
        ln -sfn /dev/null "$root/etc/systemd/system-generators/${generator##*/}"
    done
    for unit in systemd-sysctl.service systemd-udevd.service \
        systemd-udevd-control.socket systemd-udevd-kernel.socket \
        systemd-udev-trigger.service systemd-udev-settle.service \
        systemd-modules-load.service kmod-static-nodes.service \
        systemd-remount-fs.service systemd-timesyncd.service \
        systemd-random-seed.service systemd-pstore.service systemd-binfmt.service \
        proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
        sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \
        sys-fs-fuse-connections.mount dev-hugepages.mount \
        systemd-hwdb-update.service systemd-journald-audit.socket \
        systemd-firstboot.service systemd-repart.service \
        systemd-growfs-root.service systemd-fsck-root.service \
        lvm2-monitor.service lvm2-lvmpolld.socket blk-availability.service \
        dm-event.socket dm-event.service e2scrub_reap.service hwclock.service \
        procps.service ganeti.service ganeti.target prometheus.service \
        ssh.service getty@tty1.service; do
        ln -sfn /dev/null "$units/$unit"
    done

    mount_proc_and_sys "$root"
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
    mount_minimal_dev "$root"
    mount -t tmpfs -o mode=1777,nosuid,nodev kvmd-test-shm "$root/dev/shm"
    # systemd writes its status lines to /dev/console: `script`'s pty.
    touch "$root/dev/console"
    mount --bind "$console" "$root/dev/console"
    mount -t tmpfs -o mode=755,nosuid,nodev,size=64m kvmd-test-run "$root/run"
    mount -t tmpfs -o mode=1777,nosuid,nodev,size=64m kvmd-test-tmp "$root/tmp"

    cd "$root"
    mkdir .oldroot
    pivot_root . .oldroot
    umount -l /.oldroot
    rmdir /.oldroot
    cd /
    exec env -i container=kvmd-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        setpriv --bounding-set "$DROPPED" \
        /lib/systemd/systemd --unit=kvmd-test.target --log-target=journal-or-kmsg \
        --show-status=1
fi

# --- Outside.
work=${1:?usage: boot.sh WORK CHECKS [ARGS...]}
checks=${2:?usage: boot.sh WORK CHECKS [ARGS...]}
shift 2
[ "$(id -u)" = 0 ] || { echo "boot.sh: needs root" >&2; exit 1; }
work=$(realpath "$work")
deadline=$((SECONDS + ${BOOT_TIMEOUT:-120}))
# Seconds left before the deadline, at least 1 (`timeout 0` never ends).
left() { local n=$((deadline - SECONDS)); echo $((n > 0 ? n : 1)); }

# A cgroup v2 directory of our own: everything inside runs in it, so that
# it can all be killed at once, whatever state it is in.
if [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
    cg=/sys/fs/cgroup/unified/kvmd-test.$$
elif [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    cg=/sys/fs/cgroup/kvmd-test.$$
else
    echo "boot.sh: no cgroup v2 hierarchy" >&2
    exit 1
fi

launcher= pid1= pidns=
# PID 1 inside, as long as it is still the one that was started.
container_pid1() {
    [ -n "$pid1" ] || { pid1=$(cat "$work/pid1" 2>/dev/null) || return 1; }
    [ -n "$pidns" ] || pidns=$(readlink "/proc/$pid1/ns/pid" 2>/dev/null) || return 1
    [ "$(readlink "/proc/$pid1/ns/pid" 2>/dev/null)" = "$pidns" ]
}
teardown() {
    local rc=$?
    trap '' INT TERM
    trap - EXIT
    if container_pid1; then
        # SIGRTMIN+3: halt. In a container, systemd exits once it is done.
        kill -s SIGRTMIN+3 "$pid1" 2>/dev/null || true
        for _ in $(seq 100); do container_pid1 || break; sleep 0.1; done
    fi
    # Whatever is left inside (PID 1's end ends the PID namespace, and
    # the checks with it).
    if [ -e "$cg/cgroup.kill" ]; then echo 1 > "$cg/cgroup.kill" 2>/dev/null || true; fi
    if container_pid1; then kill -KILL "$pid1" 2>/dev/null || true; fi
    if [ -n "$launcher" ]; then
        # `script` first: it outlives a killed `timeout`.
        # shellcheck disable=SC2046
        kill -KILL $(cat /proc/"$launcher"/task/*/children 2>/dev/null) 2>/dev/null || true
        kill -KILL "$launcher" 2>/dev/null || true
        wait "$launcher" 2>/dev/null || true
    fi
    for _ in $(seq 50); do
        [ -d "$cg" ] || break
        find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
        sleep 0.1
    done
    if [ -d "$cg" ]; then
        echo "boot.sh: could not remove $cg" >&2
        [ "$rc" != 0 ] || rc=1
    fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir "$cg"
mkdir "$work/upper" "$work/root"
cp "$checks" "$work/checks.sh"

# `script` gives the container a pty for /dev/console, logged to a file.
# The mount namespace is private: every mount made inside goes with it.
inner=$(printf '%q ' unshare --mount --propagation private --uts --ipc --net --pid \
    --fork --kill-child "$0" --pid1 "$work" "$cg")
timeout -s KILL "$(left)" script -qfec "exec $inner" "$work/console.log" \
    < /dev/null > /dev/null 2>&1 &
launcher=$!

until container_pid1; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$launcher" 2>/dev/null; then
        echo "boot.sh: the container did not start" >&2
        cat "$work/console.log" >&2 || true
        exit 1
    fi
    sleep 0.05
done
inside() { timeout -s KILL "$(left)" nsenter -t "$pid1" -a -- "$@"; }
until [ "$(readlink "/proc/$pid1/exe" 2>/dev/null)" = /usr/lib/systemd/systemd ] \
    && inside systemctl is-system-running > /dev/null 2>&1; do
    state=$(inside systemctl is-system-running 2>/dev/null || true)
    case "$state" in degraded | maintenance | stopping) break ;; esac
    if [ $SECONDS -ge $deadline ] || ! container_pid1; then
        echo "boot.sh: systemd did not come up (state: ${state:-none})" >&2
        cat "$work/console.log" >&2 || true
        exit 1
    fi
    sleep 0.1
done
echo "RESULT boot system=$(inside systemctl is-system-running 2>/dev/null || true)"

# In the background, so that a signal to this script is acted on at once.
inside setpriv --bounding-set "$DROPPED" /bin/bash /kvmd-test/checks.sh "$@" &
checks_pid=$!
set +e
wait "$checks_pid"
rc=$?
set -e
if [ -e "$work/powering-off" ]; then
    # The checks powered the system off: systemd stops every unit, then
    # (in a container) exits. Its console says what it did.
    while container_pid1 && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if container_pid1; then finished=no; else finished=yes; fi
    echo "RESULT poweroff finished=$finished"
    exit "$rc"
fi
inside journalctl -b --no-pager -o short-monotonic > "$work/journal.txt" 2>&1 || true
exit "$rc"
