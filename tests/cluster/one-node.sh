#!/bin/bash
# A real one-node Ganeti cluster (whichever version is installed: 3.0 on
# Debian 12, 3.1 on Debian 13), in private mount, UTS and network
# namespaces, with DAEMON as its ganeti-kvmd ("original" for Debian's, or
# the path of a kvmd binary; with the kvmd-ganeti package installed, pass
# "original": the package already put kvmd at that path). Prints one line
# per scenario:   RESULT <scenario> <key>=<value>...
# tests/cluster.rs runs it and checks the lines. The host's /run/ganeti,
# /var/lib/ganeti, /var/log/ganeti and /etc/ganeti are never touched: all
# of them are private to the namespace, which dies with this script.
#
#   tests/cluster/one-node.sh DAEMON WORKDIR [KVMD]
#
# KVMD: a kvmd binary for the intent scenarios' client (`kvmd expect-stop`
# from Ganeti's hook and qga-shutdown); default DAEMON, unless that is
# "original" (with ONE_NODE_INSTALL, the package's /usr/sbin/kvmd).
set -euo pipefail

if [ "${1:-}" != --inside ]; then
    # The time limit inside lets the script clean up; the hard one outside
    # ends it when it cannot (unshare --fork waits through SIGTERM).
    exec timeout -s KILL 420 unshare --mount --uts --net --fork --kill-child -- \
        timeout "${ONE_NODE_TIMEOUT:-360}" "$0" --inside "$@"
fi
shift
daemon=$1 work=$2 kvmd_cli=${3:-}
if [ -z "$kvmd_cli" ] && [ "$daemon" != original ]; then kvmd_cli=$daemon; fi
log() { echo "one-node: $*" >&2; }

# --- isolation -------------------------------------------------------------
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mkdir -p /run/lock /run/sshd
mount -t tmpfs tmpfs /var/log
mount -t tmpfs tmpfs /srv
# root's ssh keys are made for this cluster only. Where the host has no
# /root/.ssh, a mount point made for it would stay behind: /root itself
# is then private (nothing the cluster runs needs the rest of it).
if [ -d /root/.ssh ]; then
    mount -t tmpfs tmpfs /root/.ssh
else
    mount -t tmpfs tmpfs /root
    mkdir -m 700 /root/.ssh
fi
# /etc/ssh: host keys are made for this cluster only.
sshdir=$(mktemp -d "$work/ssh.XXXX")
chmod 755 "$sshdir"
cp -a /etc/ssh/. "$sshdir"/
mount --bind "$sshdir" /etc/ssh
# /var/lib: the host's entries bound back, but ganeti private and empty.
hostvarlib=$(mktemp -d "$work/hostvarlib.XXXX")
mount --bind /var/lib "$hostvarlib"
mount -t tmpfs tmpfs /var/lib
for entry in "$hostvarlib"/*; do
    name=${entry##*/}
    # kvmd's journal (/var/lib/kvmd, its default on a Ganeti node) is the
    # cluster's own too: nothing the cluster's daemon records reaches the host.
    [ "$name" = ganeti ] || [ "$name" = kvmd ] && continue
    if [ -L "$entry" ]; then
        cp -a "$entry" /var/lib/
    elif [ -d "$entry" ]; then
        mkdir "/var/lib/$name" && mount --bind "$entry" "/var/lib/$name"
    else
        touch "/var/lib/$name" && mount --bind "$entry" "/var/lib/$name"
    fi
done
mkdir -p /var/lib/ganeti
etc=$(mktemp -d "$work/etc-ganeti.XXXX")
chmod 755 "$etc"
cp -a /etc/ganeti/. "$etc"/
mount --bind "$etc" /etc/ganeti
hosts=$(mktemp "$work/hosts.XXXX")
printf '127.0.0.1 localhost\n192.0.2.10 node1.gnt.test node1\n192.0.2.20 cluster.gnt.test\n' > "$hosts"
chmod 644 "$hosts"
mount --bind "$hosts" /etc/hosts
# The daemon Ganeti runs: /usr/sbin/ganeti-kvmd leads through
# /usr/lib/ganeti/default (-> /etc/ganeti/lib) to the installed version's
# directory, /usr/lib/ganeti/<major.minor>.
libdir=$(readlink -f /usr/lib/ganeti/default)
if [ ! -x "$libdir/usr/sbin/ganeti-kvmd" ]; then
    log "no ganeti-kvmd under $libdir (from /usr/lib/ganeti/default)"
    exit 1
fi
if [ "$daemon" != original ]; then
    mount --bind "$daemon" "$libdir/usr/sbin/ganeti-kvmd"
fi
echo "RESULT versions ganeti=$(gnt-cluster --version | awk 'NR == 1 {print $NF}')" \
    "qemu=$(/usr/bin/qemu-system-x86_64 --version | awk 'NR == 1 {print $4}')" \
    "kvmd-path=$libdir/usr/sbin/ganeti-kvmd"

hostname node1.gnt.test
ip link set lo up
ip link add gnt0 type veth peer name gnt0p
ip addr add 192.0.2.10/24 dev gnt0
ip link set gnt0 up
ip link set gnt0p up
ssh-keygen -A >/dev/null

mkdir -p /srv/ganeti/os/noop
echo 10 > /srv/ganeti/os/noop/ganeti_api_version
for script in create export import rename; do
    printf '#!/bin/sh\nexit 0\n' > "/srv/ganeti/os/noop/$script"
    chmod 755 "/srv/ganeti/os/noop/$script"
done

teardown() {
    set +e
    gnt-instance list --no-headers -o name 2>/dev/null | while read -r name; do
        gnt-instance remove -f "$name" >/dev/null 2>&1
    done
    gnt-cluster destroy --yes-do-it >/dev/null 2>&1
    /usr/lib/ganeti/daemon-util stop-all >/dev/null 2>&1
    for pidfile in /run/ganeti/*.pid /run/ganeti/kvm-hypervisor/pid/*; do
        [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null
    done
}
trap teardown EXIT
# timeout's SIGTERM must run the teardown too: QEMU daemonizes, and
# Ganeti's daemons detach; nothing else would end them.
trap 'exit 143' TERM INT

ctrl=/run/ganeti/kvm-hypervisor/ctrl
poweroff=$work/poweroff.img halt=$work/halt.img reset=$work/reset.img
# Floppy images (1.44 MB, the boot sector first). Each guest first waits
# 3 s (BIOS int 15h/86h) so that Ganeti has sent `cont` and recorded it.
python3 - "$work" <<'PY'
import sys
wait = bytes([0xB4, 0x86, 0xB9, 0x2D, 0x00, 0xBA, 0xC0, 0xC6, 0xCD, 0x15])
halt = bytes([0xF4, 0xEB, 0xFD])
key = bytes([0x31, 0xC0, 0xCD, 0x16])  # BIOS int 16h: wait for a key
programs = {
    "poweroff": wait + bytes([0xBA, 0x04, 0x06, 0xB8, 0x00, 0x20, 0xEF]),  # out 0x604, 0x2000
    # Powers off when a key comes: a guest agent's shutdown, as QMP sees it.
    "agent": key + bytes([0xBA, 0x04, 0x06, 0xB8, 0x00, 0x20, 0xEF]),
    "halt": b"",
    "reset": wait + bytes([0xB0, 0xFE, 0xE6, 0x64]),  # keyboard controller reset
}
for name, code in programs.items():
    sector = (code + halt).ljust(510, b"\0") + b"\x55\xaa"
    with open(f"{sys.argv[1]}/{name}.img", "wb") as f:
        f.write(sector.ljust(1474560, b"\0"))
PY

state() { # name -> "status oper_state admin_state admin_state_source"
    gnt-instance list --no-headers -o status,oper_state,admin_state,admin_state_source "$1" |
        tr -s ' '
}
wait_status() { # name status [seconds]
    local deadline=$((SECONDS + ${3:-60}))
    until [ "$(state "$1" | cut -d' ' -f1)" = "$2" ]; do
        if [ $SECONDS -ge $deadline ]; then
            log "$1 never reached $2 (now: $(state "$1"))"
            return 1
        fi
        sleep 0.5
    done
}
wait_down() { # name: until the instance is down, whoever decided how
    local deadline=$((SECONDS + 60))
    until state "$1" | grep -qE '^(ERROR|USER)_down '; do
        if [ $SECONDS -ge $deadline ]; then
            log "$1 never went down (now: $(state "$1"))"
            return 1
        fi
        sleep 0.5
    done
}
qemu_pid() { cat "/run/ganeti/kvm-hypervisor/pid/$1"; }
file() { [ -e "$ctrl/$1.shutdown" ] && echo present || echo absent; }
daemon_pid() {
    local pid
    pid=$(cat /run/ganeti/ganeti-kvmd.pid 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}
# Each result says whether the daemon attached at the last start: a daemon
# that did not (the original never retries a refused connect) is not
# watching, and its answer is ERROR_down whatever happened.
last=-
result() { echo "RESULT $* attached=$last"; }
# Every start of an instance, and whether the daemon got connected to its
# .kvmd socket (a QMP client on it, within 10 s: kvmd takes milliseconds).
starts=0 attached=0
start() {
    gnt-instance start "$1" >&2
    starts=$((starts + 1))
    last=no
    local deadline=$((SECONDS + 10))
    # Ganeti names the socket under /var/run, so ss shows that spelling.
    until ss -xH state established | grep -qF "/ganeti/kvm-hypervisor/ctrl/$1.kvmd "; do
        if [ $SECONDS -ge $deadline ]; then
            log "the daemon did not attach to $1"
            return 0
        fi
        sleep 0.1
    done
    attached=$((attached + 1))
    last=yes
}

mkdir -p /var/log/ganeti /run/ganeti
/usr/lib/ganeti/ensure-dirs >&2
log "gnt-cluster init"
gnt-cluster init --no-ssh-init --no-etc-hosts --master-netdev=gnt0 \
    --enabled-hypervisors=kvm --enabled-disk-templates=diskless \
    --user-shutdown=yes \
    -H "kvm:kvm_path=/usr/bin/qemu-system-x86_64,kernel_path=,user_shutdown=true,floppy_image_path=$halt,kvm_extra=-boot a" \
    cluster.gnt.test >&2
result init daemon="$(daemon_pid >/dev/null && echo running || echo absent)"

# With ONE_NODE_INSTALL (a kvmd-ganeti .deb): install it into the running
# cluster, and see Ganeti's running daemon restarted onto kvmd by the
# package's postinst. kvmd is then ganeti-kvmd for every scenario below.
running_exe() { readlink -f "/proc/$(daemon_pid)/exe" 2>/dev/null || echo none; }
wait_restarted() { # old pid
    local deadline=$((SECONDS + 20))
    until [ "$(daemon_pid || echo "$1")" != "$1" ] || [ $SECONDS -ge $deadline ]; do
        sleep 0.2
    done
}
if [ -n "${ONE_NODE_INSTALL:-}" ]; then
    before=$(daemon_pid || echo none)
    dpkg -i "$ONE_NODE_INSTALL" >&2
    wait_restarted "$before"
    result install restarted="$([ "$(daemon_pid || echo "$before")" != "$before" ] && echo yes || echo no)" exe="$(running_exe)"
fi

add() { # name image [more -H]
    gnt-instance add -t diskless --no-nics --no-install -o noop -n node1.gnt.test \
        --no-name-check --no-ip-check --ignore-ipolicy --no-start \
        -H "kvm:floppy_image_path=$2${3:+,$3}" "$1" >&2
}

# A guest that powers itself off: USER_down; the watcher marks it down
# (source user); a start runs it again and the file is gone.
add off "$poweroff"
start off
wait_status off USER_down || true
result poweroff status="$(state off | cut -d' ' -f1)" file="$(file off)"
ganeti-watcher --wait-children --no-verify-disks >&2 || true
result poweroff-watcher state="$(state off | tr ' ' ,)"
start off
result poweroff-start status="$(state off | cut -d' ' -f1)" file="$(file off)"
wait_status off USER_down || true
gnt-instance shutdown --timeout=0 off >&2 || true

# gnt-instance shutdown of a guest that ignores the button.
add deaf "$halt"
for timeout in 5 0; do
    start deaf
    gnt-instance shutdown --timeout=$timeout deaf >&2
    result "shutdown-timeout-$timeout" status="$(state deaf | cut -d' ' -f1)" file="$(file deaf)"
done

# QEMU killed with SIGKILL: ERROR_down, and the watcher restarts it.
add killed "$halt"
start killed
kill -KILL "$(qemu_pid killed)"
wait_down killed || true
result sigkill status="$(state killed | cut -d' ' -f1)" file="$(file killed)"
ganeti-watcher --wait-children --no-verify-disks >&2 || true
result sigkill-watcher status="$(state killed | cut -d' ' -f1)"
gnt-instance shutdown --timeout=0 killed >&2 || true

# QEMU sent SIGTERM, as a node going down does.
add termed "$halt"
start termed
kill -TERM "$(qemu_pid termed)"
wait_down termed || true
result sigterm status="$(state termed | cut -d' ' -f1)" file="$(file termed)"
gnt-instance shutdown --timeout=0 termed >&2 || true

# reboot_behavior=exit (-no-reboot) and a guest that resets.
add resets "$reset" reboot_behavior=exit
start resets
wait_down resets || true
result reset status="$(state resets | cut -d' ' -f1)" file="$(file resets)"
gnt-instance shutdown --timeout=0 resets >&2 || true

# The daemon not running: gnt-instance start starts it again.
kill -TERM "$(daemon_pid)"
deadline=$((SECONDS + 20))
while daemon_pid >/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
start deaf
result restart-daemon daemon="$(daemon_pid >/dev/null && echo running || echo absent)"
gnt-instance shutdown --timeout=0 deaf >&2 || true
result attach starts=$starts watched=$attached

# Intents (kvmd expect-stop), as an operator wires them (contrib/ganeti):
# the hook that tells kvmd before gnt-instance shutdown, and qga-shutdown,
# which tells kvmd before it asks the guest agent to power the guest off.
# kvmd's client is the binary under test (KVMD), at the path the
# hook looks for it (Ganeti gives hooks PATH=/sbin:/bin:/usr/sbin:/usr/bin);
# with the package installed it is there already.
contrib=$(dirname "$0")/../../contrib/ganeti
if [ -z "${ONE_NODE_INSTALL:-}" ] && [ -n "$kvmd_cli" ]; then
    mkdir "$work/sbin-upper" "$work/sbin-work"
    mount -t overlay kvmd-test-sbin \
        -o "lowerdir=/usr/sbin,upperdir=$work/sbin-upper,workdir=$work/sbin-work" /usr/sbin
    cp "$kvmd_cli" /usr/sbin/kvmd
fi
mkdir -p /etc/ganeti/hooks/instance-stop-pre.d
install -m 755 "${ONE_NODE_HOOK:-$contrib/hooks/kvmd-expect-stop}" \
    /etc/ganeti/hooks/instance-stop-pre.d/kvmd-expect-stop
decided_reason() { # name: the reason code of the daemon's last verdict, or -
    grep -F " $1: decided " /var/log/ganeti/kvm-daemon.log 2>/dev/null | tail -1 |
        sed -n 's/.*: decided [^(]*(\([a-z-]*\)).*/\1/p' | grep . || echo -
}
decided_by() { # name: who said beforehand, or -
    grep -F " $1: decided " /var/log/ganeti/kvm-daemon.log 2>/dev/null | tail -1 |
        sed -n 's/.*; intent by \([^]]*\)\].*/\1/p' | tr ' ' _ | grep . || echo -
}
# gnt-instance shutdown of a guest that ignores the button: SIGTERM, with
# the hook's intent before it.
add stopped "$halt"
start stopped
gnt-instance shutdown --timeout=0 stopped >&2 || true
result intent-hook status="$(state stopped | cut -d' ' -f1)" \
    reason="$(decided_reason stopped)" by="$(decided_by stopped)"
# The guest agent's path. The agent (inside a real guest it would carry
# out guest-shutdown itself) is played by a stub on the agent's socket
# that answers qga-shutdown's ping (guest-sync with its id, or
# guest-ping) and, at guest-shutdown, presses the key the guest waits
# for, through Ganeti's QMP socket. Requests come one a line, on one
# connection or several.
agent_stub() { # agent-socket qmp-socket
    python3 - "$1" "$2" <<'PY'
import json, os, socket, sys, time
agent, qmp = sys.argv[1:3]
server = socket.socket(socket.AF_UNIX)
server.bind(agent)
server.listen(1)
server.settimeout(120)

def shutdown_asked():
    while True:
        conn, _ = server.accept()
        with conn, conn.makefile("rw") as f:
            for line in f:
                request = json.loads(line)
                command = request.get("execute")
                if command in ("guest-sync", "guest-sync-delimited"):
                    f.write(json.dumps({"return": request["arguments"]["id"]}) + "\n")
                    f.flush()
                elif command == "guest-ping":
                    f.write(json.dumps({"return": {}}) + "\n")
                    f.flush()
                elif command == "guest-shutdown":
                    return
                else:
                    sys.exit(f"agent stub: unexpected {request}")

shutdown_asked()
deadline = time.time() + 60
while time.time() < deadline:
    try:
        with socket.socket(socket.AF_UNIX) as q:
            q.settimeout(5)
            q.connect(qmp)
            f = q.makefile("rw")
            f.readline()
            for cmd in ({"execute": "qmp_capabilities"},
                        {"execute": "send-key",
                         "arguments": {"keys": [{"type": "qcode", "data": "ret"}]}}):
                f.write(json.dumps(cmd) + "\n")
                f.flush()
                while not {"return", "error"} & set(json.loads(f.readline())):
                    pass
    except (OSError, ValueError):
        break  # QEMU is gone
    time.sleep(0.2)
PY
}
add agent "$work/agent.img"
start agent
rm -f "$work/agent.qga"
agent_stub "$work/agent.qga" "$ctrl/agent.qmp" &
stub=$!
until [ -S "$work/agent.qga" ] || ! kill -0 "$stub" 2>/dev/null; do sleep 0.1; done
agent_rc=0
"$contrib/qga-shutdown" --socket "$work/agent.qga" --by "qga-shutdown test" agent >&2 || agent_rc=$?
if [ "$agent_rc" = 0 ]; then
    wait_down agent || true
else
    kill "$stub" 2>/dev/null # refused: nothing was sent
fi
wait "$stub" 2>/dev/null || true
journaled() { # name: the reason code of the last record `kvmd history` reads, or -
    # With no flag, as an operator asks on a node: kvmd, run by Ganeti with
    # Ganeti's flags, keeps its journal where this finds it.
    local cli=$kvmd_cli
    [ -n "$cli" ] || [ ! -x /usr/sbin/kvmd ] || cli=/usr/sbin/kvmd
    [ -n "$cli" ] || { echo -; return; }
    "$cli" history "$1" 2>/dev/null | tail -1 | awk '{print $4}' | grep . || echo -
}
result intent-agent rc=$agent_rc status="$(state agent | cut -d' ' -f1)" file="$(file agent)" \
    reason="$(decided_reason agent)" by="$(decided_by agent)" journal="$(journaled agent)"
gnt-instance shutdown --timeout=0 agent >&2 || true

# contrib/ganeti/qa-user-shutdown, the operator's end-to-end check (a real
# poweroff from inside the guest, where Ganeti's own QA sends SIGTERM), run
# against this cluster: its exit status, the status seen at each step, and
# whether the daemon was connected to the instance at both of its starts.
qa_out=$work/qa.out
qa_rc=0
# ONE_NODE_QA names the script where this one runs from a copy.
"${ONE_NODE_QA:-$(dirname "$0")/../../contrib/ganeti/qa-user-shutdown}" \
    --instance qa --timeout 60 > "$qa_out" 2>&1 || qa_rc=$?
sed 's/^/qa: /' "$qa_out" >&2
qa_field() { # step key: the value on the step's PASS/FAIL line, or -
    awk -v step="$1" -v key="$2=" '
        ($1 == "PASS" || $1 == "FAIL") && $2 == step {
            for (i = 3; i <= NF; i++)
                if (index($i, key) == 1) { print substr($i, length(key) + 1); found = 1; exit }
        }
        END { if (!found) print "-" }' "$qa_out"
}
qa_attached=$(awk '$1 == "INFO" { for (i = 2; i <= NF; i++) if ($i ~ /^attached=/) print substr($i, 10) }' \
    "$qa_out" | sort -u | paste -sd,)
case $qa_attached in
    yes) ;;
    *no*) qa_attached=no ;;
    *) qa_attached=- ;;
esac
echo "RESULT qa rc=$qa_rc verdict=$(awk '$1 == "VERDICT" {print $2}' "$qa_out" | tail -1)" \
    "poweroff=$(qa_field poweroff status)" \
    "watcher=$(qa_field watcher admin_state),$(qa_field watcher source)" \
    "restart=$(qa_field restart status) again=$(qa_field poweroff-again status)" \
    "attached=$qa_attached"
# With ONE_NODE_DOCTOR (a kvmd binary): `kvmd doctor` in this cluster.
if [ -n "${ONE_NODE_DOCTOR:-}" ]; then
    # shellcheck source=tests/cluster/doctor.sh
    . "$(dirname "$0")/doctor.sh"
fi
# With ONE_NODE_REMOVE (a package name): remove it, and see the daemon
# restarted onto Debian's binary by the package's postrm.
if [ -n "${ONE_NODE_REMOVE:-}" ]; then
    before=$(daemon_pid || echo none)
    dpkg --remove "$ONE_NODE_REMOVE" >&2
    wait_restarted "$before"
    result remove restarted="$([ "$(daemon_pid || echo "$before")" != "$before" ] && echo yes || echo no)" exe="$(running_exe)"
fi
log "done"
