#!/usr/bin/env bash
# Prints what the test suite may change on the machine it runs on, one
# line per path (and per mount point, test cgroup and test program
# running), sorted, so that two listings can be compared with `diff`:
#
#   tests/host-state.sh > before; ...; tests/host-state.sh > after
#
# Used by tests/run.sh (the whole suite must leave the machine as it found
# it, but for what README's "Test it" lists) and by tests/package.rs (a
# purge must return the machine exactly).
#
# Under /etc, /usr and /lib a line carries the mode, size and link target
# too: nothing else writes there. Under /var, /run, /tmp and /dev/shm other
# programs change files all the time, so there only the paths count: a
# file left behind, or one gone, is what a test can be blamed for. The
# package system's books and caches are left out (apt-get and dpkg change
# them by design), and so are the per-user runtime and lock directories.
set -euo pipefail
export LC_ALL=C

skipped=(
    /var/lib/dpkg /var/lib/apt /var/cache /var/log/dpkg.log /var/log/apt
    /var/log/alternatives.log /var/tmp /run/user /run/lock
)
# The clone, its target directory and cargo's home, wherever they are (a
# CI may clone under /tmp or /var): they change by design.
repo=$(cd "$(dirname "$0")/.." && pwd -P)
for path in "$repo" "${CARGO_TARGET_DIR:-}" "${CARGO_HOME:-}" "${KVMD_TEST_CACHE:-}"; do
    [ -n "$path" ] && [ -e "$path" ] && skipped+=("$(cd "$path" && pwd -P)")
done
prune=()
for path in "${skipped[@]}"; do prune+=(-path "$path" -prune -o); done

detailed=() plain=()
for root in /etc /usr /lib; do [ -e "$root" ] && detailed+=("$root"); done
for root in /var /run /tmp /dev/shm; do [ -e "$root" ] && plain+=("$root"); done

{
    # Type, permissions in octal, size (0 for a directory), link target.
    find "${detailed[@]}" -xdev "${prune[@]}" \
        \( -type d -printf '%p d %#m 0\n' -o -printf '%p %y %#m %s %l\n' \) 2>/dev/null || true
    find "${plain[@]}" -xdev "${prune[@]}" -printf '%p\n' 2>/dev/null || true
    # What a test cut off could leave running or mounted: mount points,
    # the throwaway systems' cgroups, and the programs the tests start.
    awk '{ print "mount " $5 }' /proc/self/mountinfo
    find /sys/fs/cgroup -maxdepth 2 -name 'kvmd-test*' -printf 'cgroup %p\n' 2>/dev/null || true
    for comm in /proc/[0-9]*/comm; do
        read -r name < "$comm" 2>/dev/null || continue
        case $name in
        qemu-system-* | ganeti-* | kvmd | debootstrap | systemd-journal* | sshd | gnt-*)
            echo "process $name" ;;
        esac
    done
} | sort -S 1G -T /var/tmp # in memory: a spill file in /tmp would be listed
