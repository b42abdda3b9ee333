#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need,
# then runs every test (unit, end-to-end against real QEMU guests).
set -euo pipefail
cd "$(dirname "$0")/.."

# End-to-end tests boot real QEMU guests (TCG: no KVM needed).
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: installing qemu-system-x86 (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
    else
        echo "tests/run.sh: qemu-system-x86_64 is missing; install qemu-system-x86" \
             "(as root this script does it). End-to-end tests are skipped" \
             "without it, and fail under CI=true." >&2
    fi
fi

cargo test --all-targets "$@"
