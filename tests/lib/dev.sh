# Sourced by the scripts that build throwaway roots (tests/systemd/boot.sh,
# tests/trixie/enter.sh, tests/trixie/root.sh): the /dev such a root gets.
#
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
