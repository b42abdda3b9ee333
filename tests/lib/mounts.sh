# shellcheck shell=bash
# Sourced by the scripts that build throwaway roots (tests/systemd/boot.sh,
# tests/trixie/enter.sh, tests/trixie/root.sh): what such a root gets
# mounted, in a private mount namespace that takes it all away at its end.
#
#   mount_proc_and_sys ROOT
#
# A /proc of the caller's PID namespace, whose kernel knobs (/proc/sys,
# /proc/sysrq-trigger) are read-only, and /sys read-only: nothing inside
# sets a kernel-wide knob (systemd would: core_pattern, fs.file-max).
mount_proc_and_sys() {
    local root=$1 knob
    mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
    for knob in sys sysrq-trigger; do
        [ -e "$root/proc/$knob" ] || continue
        mount --bind "$root/proc/$knob" "$root/proc/$knob"
        mount -o remount,bind,ro "$root/proc/$knob"
    done
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
}

#   mount_minimal_dev ROOT
#
# A tmpfs on ROOT/dev with nothing but the usual character devices (so
# nothing inside can reach this machine's disks), a devpts instance of its
# own with /dev/ptmx, /dev/fd, and an empty /dev/shm for the caller to
# mount what it needs on.
mount_minimal_dev() {
    local dev=$1/dev node name major minor
    mount -t tmpfs -o mode=755,nosuid,size=16m kvmd-test-dev "$dev"
    for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
        IFS=: read -r name major minor <<< "$node"
        mknod -m 666 "$dev/$name" c "$major" "$minor"
    done
    mkdir "$dev/pts" "$dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$dev/pts"
    ln -s pts/ptmx "$dev/ptmx"
    ln -s /proc/self/fd "$dev/fd"
}
