#!/usr/bin/env bash
# Run by boot.sh inside a freshly booted systemd (tests/package.rs, with
# the kvmd package installed): Debian's ganeti-kvmd run by a systemd unit
# shaped like Ganeti's own example (doc/examples/systemd/ganeti-kvmd.service),
# then kvmd-ganeti installed and removed with dpkg, which writes only to
# this container's throwaway root. Each time the maintainer scripts must
# restart the unit onto the other binary (deb-systemd-invoke try-restart).
# Prints `RESULT <what> key=value...` lines for the test to check.
#
#   ganeti-kvmd-unit.sh KVMD_GANETI_DEB
set -uo pipefail
deb=$1

# Debian's ganeti-kvmd resolves the node's name at start-up.
echo "127.0.1.1 $(hostname)" >> /etc/hosts
# What ganeti-kvmd's start-up checks read (Ganeti's node daemon writes
# them on a real node), and the control directory Ganeti makes.
mkdir -p /var/lib/ganeti /run/ganeti/kvm-hypervisor/ctrl
echo kvm > /var/lib/ganeti/ssconf_hypervisor_list
echo True > /var/lib/ganeti/ssconf_enabled_user_shutdown
printf '%s=True\n%s=True\n' "$(hostname)" "$(hostname --fqdn 2> /dev/null || hostname)" \
    > /var/lib/ganeti/ssconf_node_vm_capable

cat > /etc/systemd/system/ganeti-kvmd.service << 'EOF'
[Unit]
Description=Ganeti KVM daemon (kvmd)

[Service]
Type=simple
ExecStart=/usr/sbin/ganeti-kvmd -f
Restart=on-failure
EOF
systemctl daemon-reload
systemctl start ganeti-kvmd.service

main() { systemctl show -p MainPID --value ganeti-kvmd.service; }
exe() { readlink -f "/proc/$(main)/exe"; }
# Polls until ganeti-kvmd runs `binary` and says it watches the control
# directory (Type=simple: systemd has it "active" from its fork on), for at
# most 30 s.
running() {
    local binary=$1
    for _ in $(seq 300); do
        if [ "$(exe)" = "$binary" ] &&
            journalctl -b --no-pager -o cat _PID="$(main)" 2>/dev/null |
            grep -qi "watch.*kvm-hypervisor/ctrl"; then
            return 0
        fi
        sleep 0.1
    done
    echo "RESULT timeout ganeti-kvmd on $binary"
}
# Whether the unit runs, on which binary, whether it is a new process, and
# how often it failed and was restarted by systemd (Restart=on-failure).
report() {
    local what=$1 rc=$2 before=${3:-} restarted=-
    if [ -n "$before" ]; then
        restarted=$([ "$(main)" != "$before" ] && echo yes || echo no)
    fi
    echo "RESULT $what rc=$rc active=$(systemctl is-active ganeti-kvmd.service)" \
        "exe=$(exe) restarted=$restarted" \
        "failures=$(systemctl show -p NRestarts --value ganeti-kvmd.service)"
}
original=/usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd
# deb-systemd-invoke obeys a policy-rc.d that says no; this throwaway root
# must not inherit one from the host.
rm -f /usr/sbin/policy-rc.d

running "$original"
report original 0
before=$(main)
dpkg -i "$deb" > /kvmd-test/dpkg-install.log 2>&1
rc=$?
running /usr/sbin/kvmd
report install "$rc" "$before"
# kvmd, as ganeti-kvmd, answers for what it watches.
ganeti-kvmd status > /kvmd-test/status.txt 2>&1
echo "RESULT status rc=$? watching=$(grep -c 'watching /var/run/ganeti/kvm-hypervisor/ctrl$' /kvmd-test/status.txt)"

before=$(main)
dpkg -r kvmd-ganeti > /kvmd-test/dpkg-remove.log 2>&1
rc=$?
running "$original"
report remove "$rc" "$before"
