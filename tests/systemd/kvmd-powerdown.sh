#!/usr/bin/env bash
# Run by boot.sh inside a freshly booted systemd (tests/package.rs, with
# the kvmd package installed): a node whose guests run in Ganeti's unit
# (Debian 12's ganeti.service, generated from its init script, is played by
# a unit that starts QEMU and is stopped, as Ganeti's is, by SIGTERM to its
# cgroup), with kvmd.service and kvmd-powerdown.service enabled as an
# operator would. Then the node is powered off. What happened is read from
# the work directory afterwards (the system is gone): kvmd's log (bound
# there by a drop-in) and each QEMU's exit status.
#
#   kvmd-powerdown.sh OBEY_BUTTON_IMAGE
set -uo pipefail
image=$1
# kvmd's log, as bound below (its own view is /var/log/kvmd).
log=/kvmd-test/kvmd-log/kvmd.log

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

# kvmd's log outlives the system: in the work directory.
mkdir -p /kvmd-test/kvmd-log /etc/systemd/system/kvmd.service.d
cat > /etc/systemd/system/kvmd.service.d/test-log.conf << 'UNIT'
[Service]
BindPaths=/kvmd-test/kvmd-log:/var/log/kvmd
UNIT

# Ganeti's unit, played: the guests' QEMU processes in its cgroup, each
# one's exit status written down when it ends. The shell that writes it
# down ignores SIGTERM: systemd stops this unit (SIGTERM to the whole
# cgroup) as soon as kvmd-powerdown's stop is done, which may be before
# that shell has reaped its QEMU; killed then, it would lose a clean exit.
# QEMU is started before the trap, so it keeps SIGTERM's default (and sets
# its own handler anyway).
rm -f /etc/systemd/system/ganeti.service
cat > /usr/local/sbin/fake-ganeti << SCRIPT
#!/bin/bash
mkdir -p /kvmd-test/exits
for name in g1 g2; do
    (
        qemu-system-x86_64 -machine pc,accel=tcg -nodefaults -display none \
            -m 16 -no-user-config -drive "file=$image,format=raw,if=ide,snapshot=on" \
            -qmp "unix:/run/kvmd/\$name.kvmd,server=on,wait=off" \
            < /dev/null > "/kvmd-test/\$name.out" 2>&1 &
        qemu=\$!
        trap '' TERM
        wait \$qemu
        echo \$? > "/kvmd-test/exits/\$name"
    ) &
done
wait
SCRIPT
chmod 755 /usr/local/sbin/fake-ganeti
cat > /etc/systemd/system/ganeti.service << 'UNIT'
[Unit]
Description=Ganeti, played: its guests run in this unit's cgroup
[Service]
ExecStart=/usr/local/sbin/fake-ganeti
UNIT
systemctl daemon-reload

systemctl enable --now kvmd.service kvmd-powerdown.service
echo "RESULT enabled kvmd=$(systemctl is-active kvmd.service)" \
    "powerdown=$(systemctl is-active kvmd-powerdown.service)"
systemctl start ganeti.service
wait_for "g1 monitored" logged " g1: monitoring"
wait_for "g2 monitored" logged " g2: monitoring"
echo "RESULT guests monitored=$(grep -c ': monitoring' "$log")"

# Stopping the unit while the system runs (the package's removal, an
# operator's restart) must power nothing down.
systemctl restart kvmd-powerdown.service
systemctl stop kvmd-powerdown.service
said=$(journalctl -b -u kvmd-powerdown.service -o cat --no-pager 2>/dev/null | grep -c 'no guest powered down')
systemctl start kvmd-powerdown.service
echo "RESULT stopped-while-running said=$said powerdowns=$(grep -c 'powerdown-all' "$log")" \
    "decided=$(grep -c ': decided ' "$log")" \
    "powerdown=$(systemctl is-active kvmd-powerdown.service)"

# The node goes down. boot.sh waits for systemd to finish; this script is
# done (it would be killed with the rest).
touch /kvmd-test/powering-off
systemctl poweroff --no-block
echo "RESULT poweroff asked"
