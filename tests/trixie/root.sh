#!/usr/bin/env bash
# Builds, once, a Debian 13 "trixie" root for the tests that need what
# trixie has and this machine may not: QEMU 10.0, Ganeti 3.1 (its Haskell
# ganeti-kvmd, the daemon kvmd replaces), lintian and dpkg of trixie for
# our own packages. Prints its absolute path, and nothing else, on stdout;
# progress goes to stderr. tests/trixie/enter.sh runs commands in it.
#
#   tests/trixie/root.sh
#
# The root is cached outside the clone, as
# ${KVMD_TEST_CACHE:-/var/cache/kvmd-tests}/trixie-<key>, where <key> is a
# hash of the recipe below (the package list and the build functions, not
# the comments): change either and the next run builds a new root, then
# removes the older ones. A cached root is found in a few milliseconds.
#
# A build is made in a temporary directory beside the cache's roots and
# renamed into place only once complete, all under a lock, so that
# concurrent runs build once and never see half a root: a root at the
# final path is a whole one. What a build cut off midway leaves (a
# .build-* directory) is removed by the next build. Building needs root
# and the network (deb.debian.org); debootstrap is installed on this
# machine when missing, and nothing else is: the packages go into the
# new root, whose services never start (policy-rc.d says no while
# installing). The build runs in private mount, PID, UTS and IPC
# namespaces, so the /proc, /sys and /dev it mounts for the packages'
# scripts go away with it, and so does every process it starts.
# ROOT_TIMEOUT (default 3600 s) bounds a build.
set -euo pipefail
# shellcheck source=tests/lib/mounts.sh
. "$(dirname "$0")/../lib/mounts.sh"

SUITE=trixie
MIRROR=http://deb.debian.org/debian
SECURITY=http://deb.debian.org/debian-security
PACKAGES=(
    # End-to-end tests: real guests (TCG) under the QEMU Ganeti 3.1 runs.
    qemu-system-x86
    # A one-node Ganeti 3.1 cluster, its ganeti-kvmd the original to
    # compare with (ganeti pulls ganeti-3.1; named, in case it stops to).
    ganeti ganeti-haskell-3.1
    # What Ganeti and the cluster scripts call: ip, ss, ssh, ps, mount...
    iproute2 openssh-server openssh-client procps util-linux python3 socat
    # Our .deb packages: installed with dpkg, checked with lintian, their
    # man page read with man, their Depends worked out by dpkg-shlibdeps.
    lintian man-db dpkg-dev
    # systemctl, systemd-analyze, systemd-escape; and the units' home.
    systemd
    ca-certificates
)

# --- The recipe. Everything in these functions is part of the key.

# Runs a command in the root being built, with an environment of its own.
in_root() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive \
        ${http_proxy:+"http_proxy=$http_proxy"} \
        chroot "$root" "$@"
}

# Mounts what the packages' scripts expect: a /proc of the build's own PID
# namespace, /sys read-only, a /dev with nothing but the usual character
# devices (nothing in the build can reach this machine's disks), an empty
# /run. All in the private mount namespace: gone when the build ends.
mount_api() {
    # Read-only kernel knobs: the build shares this machine's network
    # namespace (apt needs it), and no package script may set its sysctls.
    mount_proc_and_sys "$root"
    mount_minimal_dev "$root"
    mount -t tmpfs -o mode=755,nosuid,nodev,size=64m kvmd-test-run "$root/run"
}

umount_api() {
    umount -R "$root/run" "$root/dev" "$root/sys" "$root/proc"
}

# Whether a URL answers, asked from inside the root (apt's own client).
reachable() {
    in_root /usr/lib/apt/apt-helper download-file "$1" /tmp/kvmd-test-probe \
        > /dev/null 2>&1
    local rc=$?
    rm -f "$root/tmp/kvmd-test-probe"
    return "$rc"
}

build() {
    local keyring=$1
    step "debootstrap $SUITE (minbase)"
    debootstrap --variant=minbase --keyring="$keyring" "$SUITE" "$root" "$MIRROR"
    # debootstrap's own mounts are gone by now; ours are for apt.
    mount_api
    # No service may start while installing (openssh-server, ganeti...).
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"

    # trixie-updates and trixie-security when the mirror has them.
    local suites=$SUITE security=
    if reachable "$MIRROR/dists/$SUITE-updates/InRelease"; then
        suites="$suites $SUITE-updates"
    fi
    if reachable "$SECURITY/dists/$SUITE-security/InRelease"; then
        security=yes
    else
        echo "root.sh: $SECURITY is not reachable; $SUITE-security left out" >&2
    fi
    rm -f "$root/etc/apt/sources.list"
    {
        printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n' "$MIRROR" "$suites"
        printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        if [ -n "$security" ]; then
            printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\n' "$SECURITY" "$SUITE"
            printf 'Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        fi
    } > "$root/etc/apt/sources.list.d/debian.sources"

    step "apt-get install ${PACKAGES[*]}"
    in_root apt-get update -q
    in_root apt-get dist-upgrade -y -q
    in_root apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"

    # What the tests count on, checked here rather than found missing there.
    local qemu_version
    qemu_version=$(in_root qemu-system-x86_64 --version | head -1)
    case "$qemu_version" in
        *" version 10.0."*) ;;
        *) echo "root.sh: QEMU 10.0 expected, got: $qemu_version" >&2; return 1 ;;
    esac
    if [ ! -x "$root/usr/lib/ganeti/3.1/usr/sbin/ganeti-kvmd" ]; then
        echo "root.sh: /usr/lib/ganeti/3.1/usr/sbin/ganeti-kvmd is missing" >&2
        return 1
    fi

    # The Ganeti 3.1 package itself, and Debian 12's 3.0, for the node
    # upgraded from one to the other that tests/trixie/packages.sh plays.
    mkdir "$root/kvmd-test-debs"
    cp "$root"/var/cache/apt/archives/ganeti-haskell-3.1_*.deb "$root/kvmd-test-debs/"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm\nComponents: main\n%s\n' "$MIRROR" \
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
        > "$root/etc/apt/sources.list.d/bookworm.sources"
    in_root apt-get update -q
    in_root sh -c 'cd /kvmd-test-debs && apt-get download ganeti-haskell-3.0'
    rm "$root/etc/apt/sources.list.d/bookworm.sources"

    # Small, and no service barred for good once the tests run.
    rm -f "$root/usr/sbin/policy-rc.d"
    in_root apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/apt/* "$root"/tmp/* "$root"/var/tmp/*
    in_root dpkg-query -W > "$root/kvmd-test-versions.txt"
    umount_api
}

# A progress line: on stderr, and inside the build (whose output goes to
# its log) on the caller's stderr too, descriptor 3.
step() {
    echo "root.sh: $* ($(date +%T))" >&2
    if [ -n "${in_build:-}" ]; then echo "root.sh: $*" >&3; fi
}

if [ "${1:-}" = --build ]; then
    # --- Inside: PID 1 of the build's namespaces. Output to its log.
    root=$2 in_build=yes
    build "$3" >&2
    exit 0
fi

# --- Outside.
cache=${KVMD_TEST_CACHE:-/var/cache/kvmd-tests}
key=$( {
    printf '%s\n' "$SUITE" "$MIRROR" "$SECURITY" "${PACKAGES[@]}"
    declare -f in_root mount_proc_and_sys mount_minimal_dev mount_api umount_api reachable build
} | sha256sum | cut -c1-12)
final=$cache/trixie-$key

# A root at the final path is a whole one (it got there by rename).
if [ -d "$final" ]; then
    echo "$final"
    exit 0
fi

fail() { echo "root.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "no $SUITE root in $cache, and building one needs root"
mkdir -p "$cache"
cache=$(cd "$cache" && pwd -P)
final=$cache/trixie-$key

# One build at a time. The lock's descriptor is inherited by the build,
# so a build that outlives this script (killed with SIGKILL) still holds
# it: whoever gets the lock next knows every .build-* is abandoned.
exec 9> "$cache/lock"
if ! flock -n 9; then
    echo "root.sh: waiting for another build of the $SUITE root" >&2
    flock -w "${ROOT_TIMEOUT:-3600}" 9 || fail "timed out waiting for $cache/lock"
fi
if [ -d "$final" ]; then
    echo "$final"
    exit 0
fi
rm -rf --one-file-system "$cache"/.build-*

if ! command -v debootstrap > /dev/null 2>&1; then
    step "installing debootstrap on this machine (apt-get)"
    install=(apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends debootstrap)
    DEBIAN_FRONTEND=noninteractive "${install[@]}" >&2 ||
        { apt-get -o DPkg::Lock::Timeout=600 update -q >&2 &&
            DEBIAN_FRONTEND=noninteractive "${install[@]}" >&2; } ||
        fail "could not install debootstrap"
fi

tmp=$(mktemp -d "$cache/.build-$key.XXXXXX")
log=$tmp.log keyring=$tmp.keyring
launcher=''
abort() {
    local rc=$?
    trap '' INT TERM
    trap - EXIT
    if [ -n "$launcher" ]; then
        # unshare first: its end (--kill-child) ends the whole build.
        # shellcheck disable=SC2046
        kill -KILL $(cat /proc/"$launcher"/task/*/children 2>/dev/null) 2>/dev/null || true
        kill -KILL "$launcher" 2>/dev/null || true
        wait "$launcher" 2>/dev/null || true
    fi
    if [ "$rc" != 0 ]; then
        echo "root.sh: no $SUITE root: the build failed or was cut off (exit $rc);" \
            "the end of its log:" >&2
        tail -n 40 "$log" >&2 2>/dev/null || true
        rm -rf --one-file-system "$tmp" "$log" "$keyring"
    fi
    exit "$rc"
}
trap abort EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The keys trixie is signed with: this machine's keyring has them since
# bookworm's 2023.3+deb12u1; the per-release files are their source.
if compgen -G "/usr/share/keyrings/debian-archive-$SUITE-*.gpg" > /dev/null; then
    cat /usr/share/keyrings/debian-archive-"$SUITE"-*.gpg > "$keyring"
else
    cp /usr/share/keyrings/debian-archive-keyring.gpg "$keyring"
fi

started=$SECONDS
step "building $final (log: $log)"
mkdir "$tmp/root"
chmod 755 "$tmp/root"
# In the background, so that a signal to this script is acted on at once.
timeout -s KILL "${ROOT_TIMEOUT:-3600}" \
    unshare --mount --propagation private --pid --uts --ipc --fork --kill-child \
    "$0" --build "$tmp/root" "$keyring" < /dev/null 3>&2 > "$log" 2>&1 &
launcher=$!
wait "$launcher"
launcher=

mv "$tmp/root" "$final"
mv "$log" "$final.log"
rm -rf --one-file-system "$tmp" "$keyring"
# Older roots (and their logs): a recipe change made them stale.
for old in "$cache"/trixie-*; do
    case "$old" in "$final" | "$final.log") continue ;; esac
    rm -rf --one-file-system "$old"
done
step "ready in $((SECONDS - started)) s, $(du -sh "$final" | cut -f1)"
echo "$final"
