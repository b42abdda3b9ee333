# kvmd-ganeti's one piece of logic, sourced by its postinst and prerm
# (installed as /usr/share/kvmd-ganeti/ganeti-kvmd.sh): kvmd at the path of
# every Ganeti version's ganeti-kvmd, and Debian's binaries back.
#
# Ganeti installs each version under /usr/lib/ganeti/<version> (3.0 on
# Debian 12, 3.1 on Debian 13; both during an upgrade), and
# /usr/sbin/ganeti-kvmd leads to the one the cluster runs. Each one present
# is diverted aside, byte for byte, to <path>.distrib (so that upgrades of
# its ganeti-haskell package update the diverted copy) and a link to
# /usr/sbin/kvmd takes its place. The links are made here, not shipped:
# which versions are present is only known on the node, and changes when
# Ganeti is upgraded (the package's file trigger on /usr/lib/ganeti).

kvmd=/usr/sbin/kvmd

# Every ganeti-kvmd path this package diverts now, one per line.
diverted_by_us() {
    dpkg-divert --list '/usr/lib/ganeti/*/usr/sbin/ganeti-kvmd' |
        sed -n 's/^diversion of \(.*\) to .* by kvmd-ganeti$/\1/p'
}

# Is $1 our link?
is_our_link() {
    [ -L "$1" ] && [ "$(readlink "$1")" = "$kvmd" ]
}

# Puts the link at $1, replacing what is there in one step.
link_kvmd() {
    ln -sfn "$kvmd" "$1.kvmd-new"
    mv -fT "$1.kvmd-new" "$1"
}

# Diverts every Ganeti version's ganeti-kvmd that a package installed, and
# gives up the diversions of versions whose package is gone. What anyone
# else put in place (a diversion of their own, such as
# contrib/ganeti/install-kvmd's, or a file where our link would go) is
# left alone, and said so.
take_over() {
    for path in /usr/lib/ganeti/*/usr/sbin/ganeti-kvmd; do
        [ -e "$path" ] || [ -L "$path" ] || continue
        # /usr/lib/ganeti/default is a link to one of the versions.
        [ ! -L "${path%/usr/sbin/ganeti-kvmd}" ] || continue
        diverter=$(dpkg-divert --listpackage "$path")
        case "$diverter" in
        kvmd-ganeti) continue ;;
        "") ;;
        *)
            echo "kvmd-ganeti: $path is diverted by $diverter (contrib/ganeti/install-kvmd?);" \
                "left as it is: undo that, then dpkg-reconfigure kvmd-ganeti" >&2
            continue
            ;;
        esac
        # Only a file a package owns (not one made by hand).
        dpkg-query -S "$path" > /dev/null 2>&1 || continue
        dpkg-divert --package kvmd-ganeti --rename \
            --divert "$path.distrib" --add "$path" > /dev/null
    done
    for path in $(diverted_by_us); do
        if [ ! -e "$path.distrib" ]; then
            # The version's package was removed (dpkg deleted the
            # diverted binary): the link and the diversion go too.
            forget "$path"
        elif [ ! -e "$path" ] && [ ! -L "$path" ]; then
            link_kvmd "$path"
        elif ! is_our_link "$path"; then
            echo "kvmd-ganeti: $path is not the link to $kvmd; left as it is" >&2
        fi
    done
}

# Gives up the diversion of $1, whose package is gone: our link, the
# diversion, and the directories dpkg could not remove because of the link.
forget() {
    if is_our_link "$1"; then rm -f "$1"; fi
    dpkg-divert --package kvmd-ganeti --no-rename --remove "$1" > /dev/null
    rmdir -p --ignore-fail-on-non-empty "${1%/*}" 2> /dev/null || true
}

# Puts every diverted binary back at its path. Something other than our
# link at a path is kept, and so is the binary beside it.
give_back() {
    for path in $(diverted_by_us); do
        if [ ! -e "$path.distrib" ]; then
            forget "$path"
            continue
        fi
        if is_our_link "$path"; then rm -f "$path"; fi
        if [ -e "$path" ] || [ -L "$path" ]; then
            echo "kvmd-ganeti: $path is not the link to $kvmd; Debian's binary" \
                "stays at $path.distrib" >&2
            dpkg-divert --package kvmd-ganeti --no-rename --remove "$path" > /dev/null
        else
            dpkg-divert --package kvmd-ganeti --rename --remove "$path" > /dev/null
        fi
    done
}

# Restarts ganeti-kvmd when it runs a binary other than the one Ganeti's
# path now leads to, the way Ganeti itself would: its systemd unit when
# systemd runs it, else daemon-util (the pid file and start-stop-daemon).
# One that is not running is left so: Ganeti starts it with the next
# instance start. One already on the right binary is not restarted (the
# trigger on /usr/lib/ganeti runs this on every Ganeti package update).
restart_ganeti_kvmd() {
    target=$(readlink -f /usr/sbin/ganeti-kvmd)
    if [ -d /run/systemd/system ]; then
        pid=$(systemctl show -p MainPID --value ganeti-kvmd.service 2> /dev/null) || pid=0
        if [ "${pid:-0}" != 0 ]; then
            running=$(readlink -f "/proc/$pid/exe" 2> /dev/null) || return 0
            [ "$running" != "$target" ] || return 0
            deb-systemd-invoke try-restart ganeti-kvmd.service > /dev/null 2>&1 || true
            return 0
        fi
    fi
    pid=$(cat /var/run/ganeti/ganeti-kvmd.pid 2> /dev/null) || return 0
    # A stale pid file's number may belong to another process by now.
    [ "$(cat "/proc/$pid/comm" 2> /dev/null)" = ganeti-kvmd ] || return 0
    running=$(readlink -f "/proc/$pid/exe" 2> /dev/null) || return 0
    [ "$running" != "$target" ] || return 0
    if [ -x /usr/lib/ganeti/daemon-util ]; then
        { /usr/lib/ganeti/daemon-util stop ganeti-kvmd &&
            /usr/lib/ganeti/daemon-util start ganeti-kvmd; } ||
            echo "kvmd-ganeti: restarting ganeti-kvmd with daemon-util failed" >&2
    else
        echo "kvmd-ganeti: ganeti-kvmd (pid $pid) still runs $running: restart it" >&2
    fi
}
