#!/usr/bin/env bash
# Runs a command inside a Debian root (the trixie one tests/trixie/root.sh
# prints), in private mount, UTS, IPC, PID and network namespaces, on a
# throwaway copy of it: a tmpfs overlay over ROOT, which is never written.
#
#   tests/trixie/enter.sh ROOT WORK -- CMD [ARGS...]
#
# WORK (a host directory) and this repository are bound inside at the same
# absolute paths as outside, so that the paths baked into the test
# binaries (CARGO_MANIFEST_DIR, CARGO_BIN_EXE_kvmd: target/...) hold
# there unchanged; whatever a command leaves for the outside goes to WORK.
# The current directory is kept when it exists inside (it is / otherwise).
# CMD gets this script's stdin, stdout and stderr, and its exit status is
# this script's. Its environment is clean but for PATH, HOME=/root, CI and
# RUST_BACKTRACE when set, and the variables named in ENTER_ENV
# (space-separated names).
#
# Meant to leave the host as it was, for well-behaved code inside (this is
# a test bed, not a security boundary: everything inside is root with
# every capability): every write lands in the overlay's tmpfs, but for
# those to WORK and the repository; /sys and /proc/sys are read-only
# inside (no kernel-wide knob is set from there); /dev holds only the
# usual character devices; the network is a loopback of its own. Bounded
# in time: ENTER_TIMEOUT (default 900 s); whatever happens, signals to
# this script included, every process inside is killed (cgroup.kill) and
# the cgroup removed; the mounts go with the mount namespace.
set -euo pipefail
# shellcheck source=tests/lib/mounts.sh
. "$(dirname "$0")/../lib/mounts.sh"

if [ "${1:-}" = --inside ]; then
    # --- Inside: PID 1 of the new PID namespace, in the private mount
    # namespace, with the current directory and environment of outside.
    root=$2 work=$3 repo=$4 stage=$5 cwd=$6
    shift 6
    echo kvmd-test > /proc/sys/kernel/hostname
    mount -t tmpfs -o mode=755,size="${ENTER_TMPFS_SIZE:-2g}" kvmd-test-upper "$stage"
    mkdir "$stage/upper" "$stage/work" "$stage/root"
    new=$stage/root
    mount -t overlay kvmd-test-root \
        -o "lowerdir=$root,upperdir=$stage/upper,workdir=$stage/work" "$new"

    mount_proc_and_sys "$new"
    mount_minimal_dev "$new"
    ln -s /proc/self/fd/0 "$new/dev/stdin"
    ln -s /proc/self/fd/1 "$new/dev/stdout"
    ln -s /proc/self/fd/2 "$new/dev/stderr"
    mount -t tmpfs -o mode=1777,nosuid,nodev,size=1g kvmd-test-shm "$new/dev/shm"
    mount -t tmpfs -o mode=755,nosuid,nodev,size=256m kvmd-test-run "$new/run"
    mkdir "$new/run/lock"
    mount -t tmpfs -o mode=1777,nosuid,nodev,size=2g kvmd-test-tmp "$new/tmp"
    # After the tmpfs mounts, which WORK may be under (/dev/shm, /tmp);
    # the shorter path first, should one hold the other.
    while IFS= read -r dir; do
        mkdir -p "$new$dir"
        mount --bind "$dir" "$new$dir"
    done < <(printf '%s\n' "$repo" "$work" | awk '{ print length, $0 }' | sort -n |
        cut -d' ' -f2-)

    cd "$new"
    mkdir .oldroot
    pivot_root . .oldroot
    umount -l /.oldroot
    rmdir /.oldroot
    cd "$cwd" 2>/dev/null || cd /
    ip link set lo up

    environment=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root)
    for name in CI RUST_BACKTRACE ${ENTER_ENV:-}; do
        if [ -n "${!name+set}" ]; then environment+=("$name=${!name}"); fi
    done
    # CMD is not PID 1 (which ignores signals it has no handler for, and
    # must reap the orphans): this shell is, and waits for it. Its end
    # ends the PID namespace, and whatever CMD left running with it.
    env -i "${environment[@]}" "$@" 0<&0 &
    set +e
    wait $!
    exit
fi

# --- Outside.
usage="usage: enter.sh ROOT WORK -- CMD [ARGS...]"
if [ $# -lt 4 ] || [ "$3" != -- ]; then echo "$usage" >&2; exit 2; fi
root=$1 work=$2
shift 3
[ "$(id -u)" = 0 ] || { echo "enter.sh: needs root" >&2; exit 1; }
[ -x "$root/usr/bin/env" ] || { echo "enter.sh: $root is not a root" >&2; exit 1; }
[ -d "$work" ] || { echo "enter.sh: $work is not a directory" >&2; exit 1; }
root=$(realpath "$root")
work=$(realpath "$work")
repo=$(cd "$(dirname "$0")/../.." && pwd -P)
deadline=$((SECONDS + ${ENTER_TIMEOUT:-900}))

# A cgroup v2 directory of our own: everything inside runs in it, so that
# it can all be killed at once, whatever state it is in.
if [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
    cg=/sys/fs/cgroup/unified/kvmd-test-enter.$$
elif [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    cg=/sys/fs/cgroup/kvmd-test-enter.$$
else
    echo "enter.sh: no cgroup v2 hierarchy" >&2
    exit 1
fi

launcher='' stage=''
# shellcheck disable=SC2317 # (run by the traps)
teardown() {
    local rc=$?
    trap '' INT TERM
    trap - EXIT
    if [ -e "$cg/cgroup.kill" ]; then echo 1 > "$cg/cgroup.kill" 2>/dev/null || true; fi
    if [ -n "$launcher" ]; then
        # Should it not have joined the cgroup yet.
        kill -KILL "$launcher" 2>/dev/null || true
        wait "$launcher" 2>/dev/null || true
    fi
    for _ in $(seq 50); do
        [ -d "$cg" ] || break
        rmdir "$cg" 2>/dev/null || true
        [ -d "$cg" ] || break
        sleep 0.1
    done
    if [ -d "$cg" ]; then
        echo "enter.sh: could not remove $cg" >&2
        [ "$rc" != 0 ] || rc=1
    fi
    # The mounts on it were in the namespace, gone with its last process.
    if [ -n "$stage" ]; then rmdir "$stage" 2>/dev/null || true; fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir "$cg"
# Where the overlay is put together: an empty directory, mounted over
# inside the namespace only.
stage=$(mktemp -d "${TMPDIR:-/tmp}/kvmd-test-enter.XXXXXX")

# In the background, so that a signal to this script is acted on at once
# (the explicit stdin: a background command's is /dev/null otherwise).
# The subshell joins the cgroup before it becomes `timeout`, so nothing
# it starts is outside. (--foreground: timeout ends unshare alone, whose
# end ends the PID namespace; the teardown kills the rest.)
exec 3<&0
(
    echo 0 > "$cg/cgroup.procs"
    exec timeout --foreground -s KILL "$(( deadline - SECONDS > 0 ? deadline - SECONDS : 1 ))" \
        unshare --mount --propagation private --uts --ipc --net --pid --fork --kill-child \
        "$0" --inside "$root" "$work" "$repo" "$stage" "$PWD" "$@" <&3 3<&-
) &
launcher=$!
exec 3<&-
set +e
wait "$launcher"
rc=$?
set -e
launcher=
if [ "$SECONDS" -ge "$deadline" ]; then
    echo "enter.sh: timed out after ${ENTER_TIMEOUT:-900} s" >&2
    rc=124
fi
exit "$rc"
