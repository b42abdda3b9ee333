#!/usr/bin/env bash
# Run by boot.sh inside a freshly booted systemd (tests/package.rs, with
# the kvmd package installed): starts kvmd.service as an operator would and
# checks that it runs under its sandbox and still does its work there.
# Prints `RESULT <what> key=value...` lines for the test to check; a wait
# that runs out prints `RESULT timeout <what>` and the script goes on.
#
#   kvmd-service.sh POWER_OFF_IMAGE HALT_IMAGE
set -uo pipefail
power_off=$1 halt=$2
log=/var/log/kvmd/kvmd.log

# Polls `$@` until it succeeds, for at most 30 s.
wait_for() {
    local what=$1
    shift
    for _ in $(seq 300); do
        "$@" > /dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "RESULT timeout $what"
    return 1
}
logged() { grep -qF -- "$1" "$log"; }

echo "RESULT unit enabled=$(systemctl is-enabled kvmd.service 2>&1)" \
    "active=$(systemctl is-active kvmd.service 2>&1)"

# Type=notify: `start` returns once kvmd said READY=1.
systemctl start kvmd.service
start=$?
echo "RESULT start rc=$start active=$(systemctl is-active kvmd.service)" \
    "status=\"$(systemctl show -p StatusText --value kvmd.service)\""

main=$(systemctl show -p MainPID --value kvmd.service)
field() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$main/status"; }
root_options=$(awk '$5 == "/" { print $6 }' "/proc/$main/mountinfo")
[ "$(readlink "/proc/$main/ns/net")" = "$(readlink /proc/1/ns/net)" ] && netns=shared || netns=private
echo "RESULT sandbox nonewprivs=$(field NoNewPrivs) seccomp=$(field Seccomp)" \
    "capbnd=$(field CapBnd) netns=$netns root=${root_options%%,*}"

out=$(kvmd status 2>&1)
echo "RESULT status rc=$? watching=$(grep -c 'watching /run/kvmd$' <<< "$out")"

# A guest that powers itself off: the user's shutdown, so kvmd, sandboxed,
# must write /run/kvmd/g1.shutdown. Started paused; let go once kvmd is
# monitoring it, so that the answer cannot depend on who was quicker.
guest() {
    qemu-system-x86_64 -machine pc,accel=tcg -nodefaults -display none \
        -m 16 -S -no-user-config -drive "file=$2,format=raw,if=ide" \
        -qmp "unix:/run/kvmd/$1.kvmd,server=on,wait=off" \
        -qmp "unix:/kvmd-test/$1.qmp,server=on,wait=off" \
        < /dev/null > "/kvmd-test/$1.out" 2>&1 &
}
# Sends `cont` on the guest's own QMP socket.
cont() {
    /usr/bin/python3 - "/kvmd-test/$1.qmp" << 'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ("qmp_capabilities", "cont"):
    f.write(json.dumps({"execute": cmd}) + "\n")
    f.flush()
    while "return" not in json.loads(f.readline()):
        pass
EOF
}
guest g1 "$power_off"
g1=$!
wait_for "g1 monitored" logged " g1: monitoring"
cont g1
# QEMU is gone before kvmd decides; if the file never comes, end it.
wait_for "g1.shutdown" test -e /run/kvmd/g1.shutdown || kill -KILL "$g1"
wait "$g1"
echo "RESULT user-poweroff qemu-exit=$? file=$([ -e /run/kvmd/g1.shutdown ] && echo yes || echo no)" \
    "decided=\"$(grep -F ' g1: decided ' "$log" | sed 's/.* g1: decided //')\""

# A guest killed from outside: not the user's doing, no file.
guest g2 "$halt"
g2=$!
wait_for "g2 monitored" logged " g2: monitoring"
kill -KILL "$g2"
wait "$g2" 2> /dev/null
wait_for "g2 decided" logged " g2: decided "
echo "RESULT sigkill file=$([ -e /run/kvmd/g2.shutdown ] && echo yes || echo no)" \
    "decided=\"$(grep -F ' g2: decided ' "$log" | sed 's/.* g2: decided //')\""

# Reload: SIGHUP, same process.
systemctl reload kvmd.service
reload=$?
wait_for "reopened log" logged "SIGHUP: log file reopened"
echo "RESULT reload rc=$reload same-pid=$([ "$(systemctl show -p MainPID --value kvmd.service)" = "$main" ] && echo yes || echo no)"

systemctl stop kvmd.service
stop=$?
echo "RESULT stop rc=$stop active=$(systemctl is-active kvmd.service)" \
    "result=$(systemctl show -p Result --value kvmd.service)"
