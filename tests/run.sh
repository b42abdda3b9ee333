#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need,
# then runs every test (unit, end-to-end against real QEMU guests).
set -euo pipefail
cd "$(dirname "$0")/.."

# End-to-end tests boot real QEMU guests (TCG: no KVM needed); the
# side-by-side tests run Debian's ganeti-kvmd, the daemon kvmd replaces.
missing=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
[ -x /usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd ] || missing+=(ganeti-haskell-3.0)
# tests/cluster.rs: a real one-node Ganeti cluster (gnt-*, daemon-util).
[ -x /usr/sbin/gnt-cluster ] || missing+=(ganeti)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
# contrib/ganeti/qga-shutdown is a Python script (tests/qga_shutdown.rs);
# Ganeti brings Python too, but the test does not lean on that.
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v logrotate >/dev/null 2>&1 || missing+=(logrotate)
# promtool checks the metrics file; Debian ships it with the server.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# systemd-escape (the hook example), systemd-analyze (the units).
command -v systemd-escape >/dev/null 2>&1 || missing+=(systemd)
# The Debian packages: built with cargo-deb (below), checked with lintian,
# their man page found with man; dpkg-shlibdeps works out their Depends.
command -v lintian >/dev/null 2>&1 || missing+=(lintian)
command -v man >/dev/null 2>&1 || missing+=(man-db)
command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
# The Debian 13 root (tests/trixie/root.sh) for QEMU 10 and Ganeti 3.1.
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: installing ${missing[*]} (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        # No service a package brings (a Prometheus server) may start on
        # the test machine: policy-rc.d says no while installing.
        policy=/usr/sbin/policy-rc.d
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy"
            chmod 755 "$policy"
            policy_made=yes
            trap 'rm -f "$policy"' EXIT
        fi
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        # Gone before the tests: deb-systemd-invoke obeys it too, and
        # tests/package.rs needs it to restart units (inside a throwaway
        # systemd whose root is this machine's).
        if [ -n "${policy_made:-}" ]; then rm -f "$policy"; fi
    else
        echo "tests/run.sh: missing ${missing[*]}; as root this script installs" \
             "them. Tests that need them are skipped, and fail under CI=true." >&2
    fi
fi

# cargo-deb builds the packages (tests/package.rs); a crate, not a Debian
# package. Pinned: the package metadata in Cargo.toml is written for it.
if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "tests/run.sh: installing cargo-deb (cargo install)"
    cargo install --quiet --locked cargo-deb --version 3.8.0
fi

# Everything the suite does to this machine is done above (the packages,
# cargo-deb) or lands in target/ and the cache of tests/trixie/root.sh:
# README's "Test it" says so, and this holds it to that. A test that leaves
# a file in /run, /tmp or /dev/shm, or changes /etc or /usr, fails the run.
state=target/host-state
mkdir -p "$state"
tests/host-state.sh > "$state/before"
set +e
cargo test --all-targets "$@"
rc=$?
set -e
tests/host-state.sh > "$state/after"
if ! diff -u "$state/before" "$state/after" > "$state/diff"; then
    echo "tests/run.sh: the tests left this machine changed (- gone, + new):" >&2
    grep -m 50 '^[-+]/' "$state/diff" >&2 || true
    # Under CI the machine runs nothing else, so any change is the suite's.
    # On a developer's machine other programs change /tmp and /run too.
    if [ "${CI:-}" = true ]; then
        [ "$rc" != 0 ] || rc=1
    else
        echo "tests/run.sh: (a warning here; under CI=true, a failure)" >&2
    fi
fi
exit "$rc"
