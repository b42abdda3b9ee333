#!/usr/bin/env bash
# Run inside a throwaway Debian 13 root (tests/trixie/enter.sh, from
# tests/package.rs): the kvmd packages built on Debian 12, as an operator
# of a Debian 13 Ganeti node meets them. Prints `RESULT <what> key=value...`
# lines for the test to check.
#
#   packages.sh KVMD_DEB KVMD_GANETI_DEB GANETI_30_DEB GANETI_31_DEB
#
# GANETI_30_DEB is Debian 12's ganeti-haskell-3.0, GANETI_31_DEB Debian
# 13's ganeti-haskell-3.1 (the one installed in the root): with them the
# upgrade of a node from Ganeti 3.0 to 3.1 is played at the end.
set -uo pipefail
kvmd_deb=$1 ganeti_deb=$2 ganeti30_deb=$3 ganeti31_deb=$4
here=$(dirname "$(readlink -f "$0")")
state=$here/../host-state.sh
g30=/usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd
g31=/usr/lib/ganeti/3.1/usr/sbin/ganeti-kvmd
export DEBIAN_FRONTEND=noninteractive
say() { echo "packages: $*" >&2; }
# A file's sha256, or "missing" (two missing files are not the same).
sum() { sha256sum "$1" 2> /dev/null | cut -d' ' -f1 | grep . || echo "missing:$1"; }
resolved() { readlink -f "$1" 2> /dev/null || echo none; }
diversions() { dpkg-divert --list '*ganeti-kvmd' | sed -n 's/.* by //p' | sort | tr '\n' , ; }
# Not in /tmp, which the purge's before-and-after comparison lists.
tmp=$(mktemp -d /root/kvmd-packages.XXXXXX)

echo "RESULT versions debian=$(cat /etc/debian_version) ganeti31=$(dpkg-query -W -f '${Version}' ganeti-haskell-3.1)" \
    "lintian=$(dpkg-query -W -f '${Version}' lintian)"

# Debian 13's lintian: no error, no warning (the tags, one per line).
lintian "$kvmd_deb" "$ganeti_deb" > "$tmp/lintian" 2>&1
rc=$?
tags=$(grep -cE '^(E|W):' "$tmp/lintian")
echo "RESULT lintian rc=$rc errors-and-warnings=$tags"
sed 's/^/lintian: /' "$tmp/lintian" >&2

# apt install next to ganeti-haskell-3.1: Ganeti 3.1's path runs kvmd.
original=$(sum $g31)
"$state" > "$tmp/before"
apt-get install -y -q --no-install-recommends "$kvmd_deb" "$ganeti_deb" > "$tmp/apt" 2>&1
rc=$?
sed 's/^/apt: /' "$tmp/apt" >&2
echo "RESULT install rc=$rc path=$(resolved /usr/sbin/ganeti-kvmd)" \
    "distrib=$([ "$(sum $g31.distrib)" = "$original" ] && echo same || echo differs)" \
    "diverted=$(diversions)"
named=$(/usr/sbin/ganeti-kvmd --version 2>&1 | head -1)
echo "RESULT named $( [[ $named == "ganeti-kvmd (kvmd)"* ]] && echo kvmd || echo "other:$named")"

# Removing kvmd-ganeti puts Ganeti 3.1's binary back, byte for byte.
apt-get purge -y -q kvmd-ganeti > "$tmp/apt" 2>&1
rc=$?
sed 's/^/apt: /' "$tmp/apt" >&2
echo "RESULT remove rc=$rc original=$([ "$(sum $g31)" = "$original" ] && echo same || echo differs)" \
    "diverted=$(diversions)"

# A node where kvmd was put in place by hand (contrib/ganeti/install-kvmd,
# a local diversion): the package installs, says so, and leaves it alone.
"$here/../../contrib/ganeti/install-kvmd" /usr/sbin/kvmd > /dev/null 2>&1 ||
    echo "RESULT by-hand-setup failed"
apt-get install -y -q --no-install-recommends "$kvmd_deb" "$ganeti_deb" > "$tmp/apt" 2>&1
rc=$?
sed 's/^/apt: /' "$tmp/apt" >&2
echo "RESULT by-hand rc=$rc diverted=$(diversions)" \
    "said=$(grep -q 'is diverted by LOCAL' "$tmp/apt" && echo yes || echo no)"
apt-get purge -y -q kvmd-ganeti > /dev/null 2>&1
"$here/../../contrib/ganeti/install-kvmd" --undo > /dev/null 2>&1
echo "RESULT by-hand-undone original=$([ "$(sum $g31)" = "$original" ] && echo same || echo differs)" \
    "diverted=$(diversions)"

# A real one-node Ganeti 3.1 cluster, Debian's ganeti-kvmd running, into
# which kvmd-ganeti is installed (its daemon restarted onto kvmd, every
# scenario then run with the package's kvmd) and from which it is removed
# at the end (restarted onto Debian's again).
ONE_NODE_INSTALL=$ganeti_deb ONE_NODE_REMOVE=kvmd-ganeti \
    "$here/../cluster/one-node.sh" original "$tmp" > "$tmp/cluster" 2> "$tmp/cluster.err"
rc=$?
sed 's/^/cluster: /' "$tmp/cluster.err" >&2
sed -n 's/^RESULT /RESULT cluster-/p' "$tmp/cluster"
echo "RESULT cluster rc=$rc"

# Purge: the machine as it was before the install.
apt-get purge -y -q kvmd-ganeti kvmd > "$tmp/apt" 2>&1
rc=$?
sed 's/^/apt: /' "$tmp/apt" >&2
"$state" > "$tmp/after"
diff "$tmp/before" "$tmp/after" | sed -n 's/^[<>] /purge-diff: /p' >&2
echo "RESULT purge rc=$rc original=$([ "$(sum $g31)" = "$original" ] && echo same || echo differs)" \
    "diverted=$(diversions)" "machine=$(cmp -s "$tmp/before" "$tmp/after" && echo same || echo changed)"

# A node upgraded from Ganeti 3.0 to 3.1 with kvmd-ganeti installed, as
# a release upgrade does it: Debian 12's ganeti-haskell-3.0 running (its
# Debian 12 libraries are not all in Debian 13; only its files matter
# here), then 3.1 unpacked beside it, `gnt-cluster upgrade --to 3.1`
# switching the running version (the link /etc/ganeti/lib, which
# /usr/sbin/ganeti-kvmd goes through; played here by ln, as no cluster
# runs), and 3.0 removed. Ganeti's prerm
# refuses to remove the running version, hence the order.
{ dpkg --force-depends -i "$ganeti30_deb" && ln -sfn /usr/lib/ganeti/3.0 /etc/ganeti/lib &&
    dpkg --force-depends -r ganeti-haskell-3.1; } > "$tmp/dpkg" 2>&1
rc=$?
sed 's/^/dpkg: /' "$tmp/dpkg" >&2
echo "RESULT upgrade-setup rc=$rc"
original30=$(sum $g30)
dpkg --force-depends -i "$kvmd_deb" "$ganeti_deb" > "$tmp/dpkg" 2>&1
rc=$?
sed 's/^/dpkg: /' "$tmp/dpkg" >&2
echo "RESULT upgrade-start rc=$rc g30=$(resolved $g30) g31=$( [ -e $g31 ] && echo present || echo absent)" \
    "runs=$(resolved /usr/sbin/ganeti-kvmd) diverted=$(diversions)"
dpkg --force-depends -i "$ganeti31_deb" > "$tmp/dpkg" 2>&1
rc=$?
sed 's/^/dpkg: /' "$tmp/dpkg" >&2
echo "RESULT upgrade-31 rc=$rc g30=$(resolved $g30) g31=$(resolved $g31)" \
    "distrib31=$([ "$(sum $g31.distrib)" = "$original" ] && echo same || echo differs)" \
    "distrib30=$([ "$(sum $g30.distrib)" = "$original30" ] && echo same || echo differs)" \
    "diverted=$(diversions)"
# What `gnt-cluster upgrade --to 3.1` does to the running version's link.
ln -sfn /usr/lib/ganeti/3.1 /etc/ganeti/lib
dpkg --force-depends -r ganeti-haskell-3.0 > "$tmp/dpkg" 2>&1
rc=$?
sed 's/^/dpkg: /' "$tmp/dpkg" >&2
echo "RESULT upgrade-remove-30 rc=$rc g30=$( [ -e $g30 ] || [ -L $g30 ] && echo present || echo absent)" \
    "dir30=$( [ -d /usr/lib/ganeti/3.0 ] && echo present || echo absent)" \
    "g31=$(resolved $g31) runs=$(resolved /usr/sbin/ganeti-kvmd) diverted=$(diversions)"
dpkg --purge kvmd-ganeti kvmd > "$tmp/dpkg" 2>&1
rc=$?
sed 's/^/dpkg: /' "$tmp/dpkg" >&2
echo "RESULT upgrade-purge rc=$rc original=$([ "$(sum $g31)" = "$original" ] && echo same || echo differs)" \
    "diverted=$(diversions)"
say "done"
