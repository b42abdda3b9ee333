//! The Debian packages, as an operator meets them: `cargo deb` builds
//! `kvmd` and `kvmd-ganeti`, `lintian` finds no error or warning, `dpkg -i` puts the
//! binary, man page, unit and log rotation in place (the unit verified by
//! `systemd-analyze`, never enabled by the package, and started by a real
//! systemd with its sandbox applied), `kvmd-ganeti` diverts
//! Debian's `ganeti-kvmd` to kvmd, and `dpkg --purge` returns the machine
//! exactly to how it was: the same files under /etc, /usr, /var, /run and
//! the original `ganeti-kvmd` byte for byte.
//!
//! The Debian 12 test installs packages on the machine running the tests
//! (root only); it refuses to touch a machine where a `kvmd` package is
//! already installed. The Debian 13 test does the same in a throwaway
//! Debian 13 root. The two take turns, alone in their own test binary.

mod common;

use common::{boot_image, program, skip};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};

const GANETI_KVMD: &str = "/usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd";

fn run(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    let out = command.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(command: &mut Command) -> String {
    String::from_utf8_lossy(&run(command).stdout).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The machine's state as far as a package could change it, a line per
/// path (tests/host-state.sh, which tests/run.sh uses for the whole suite):
/// not /tmp and /dev/shm, which other programs change while this runs.
fn snapshot() -> BTreeSet<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/host-state.sh");
    stdout(&mut Command::new(script))
        .lines()
        .filter(|l| !l.starts_with("/tmp") && !l.starts_with("/dev/shm"))
        .map(str::to_owned)
        .collect()
}

fn sha256(path: &str) -> String {
    stdout(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed"))
}

struct Purge(&'static [&'static str]);
impl Drop for Purge {
    fn drop(&mut self) {
        // A failed check must not leave the machine with kvmd installed
        // over Ganeti's daemon.
        let _ = Command::new("dpkg").arg("--purge").args(self.0).output();
    }
}

/// The tests here take turns: each needs the machine's two cores, and the
/// Debian 12 one compares the whole machine before and after.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Both packages, built once for the tests that use them.
fn debs() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(build)
}

fn build() -> (PathBuf, PathBuf) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let debs = root.join("target/debian");
    let _ = std::fs::remove_dir_all(&debs);
    run(Command::new(&cargo).current_dir(root).args(["deb", "-q"]));
    run(Command::new(&cargo).current_dir(root).args([
        "deb",
        "-q",
        "--no-build",
        "--variant",
        "ganeti",
    ]));
    let version = env!("CARGO_PKG_VERSION");
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"));
    let name = |package: &str| debs.join(format!("{package}_{version}-1_{}.deb", arch.trim()));
    (name("kvmd"), name("kvmd-ganeti"))
}

fn field(deb: &Path, name: &str) -> String {
    stdout(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim()
        .to_owned()
}

#[test]
fn packages_install_work_and_purge_to_nothing() {
    if !nix::unistd::geteuid().is_root() {
        return skip("not root: the package test installs packages");
    }
    for tool in ["cargo-deb", "dpkg", "lintian", "systemd-analyze"] {
        if !have(tool) {
            return skip(&format!("{tool} not found (tests/run.sh installs it)"));
        }
    }
    if !Path::new(GANETI_KVMD).exists() {
        return skip("ganeti-haskell-3.0 not installed (tests/run.sh installs it)");
    }
    if installed("kvmd") || installed("kvmd-ganeti") {
        return skip("a kvmd package is installed here; the test would replace it");
    }
    let _turn = one_at_a_time();
    let (kvmd_deb, ganeti_deb) = debs().clone();

    // What an operator reads before installing.
    assert_eq!(field(&kvmd_deb, "Package"), "kvmd");
    // Built on Debian 12: the glibc it needs is no newer than Debian 12's
    // (2.36), so the same .deb installs there and on Debian 13.
    let depends = field(&kvmd_deb, "Depends");
    let libc = depends
        .split(',')
        .find_map(|d| d.trim().strip_prefix("libc6 (>= "))
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no libc6 (>= ...) in {depends}"));
    let version = |v: &str| -> Vec<u32> { v.split('.').filter_map(|n| n.parse().ok()).collect() };
    assert!(version(libc) <= version("2.36"), "needs glibc {libc}");
    let description = field(&kvmd_deb, "Description");
    assert!(!description.contains("generated from"), "{description}");
    assert!(description.contains("systemctl enable --now kvmd"));
    let depends = field(&ganeti_deb, "Depends");
    let own = format!("kvmd (= {}-1)", env!("CARGO_PKG_VERSION"));
    assert!(
        depends.contains(&own) && depends.contains("ganeti-haskell-3.0 | ganeti-haskell-3.1"),
        "kvmd-ganeti must depend on this very kvmd ({own}): {depends}"
    );

    // lintian (Debian 12's; packages_on_debian_13 runs Debian 13's): no error,
    // no warning.
    // Its temporary files (MLDBM caches) are left in TMPDIR: a directory
    // of the test's own, not the machine's /tmp.
    let lint_tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let lint = Command::new("lintian")
        .arg(&kvmd_deb)
        .arg(&ganeti_deb)
        .env("TMPDIR", lint_tmp.path())
        .output()
        .expect("lintian");
    let lint = String::from_utf8_lossy(&lint.stdout);
    let found: Vec<&str> = lint
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(found.is_empty(), "lintian:\n{lint}");

    let original = sha256(GANETI_KVMD);
    let before = snapshot();
    let _purge = Purge(&["kvmd-ganeti", "kvmd"]);

    // The standalone package.
    run(Command::new("dpkg").arg("-i").arg(&kvmd_deb));
    let version = stdout(Command::new("/usr/sbin/kvmd").arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let man = stdout(Command::new("man").args(["-w", "kvmd"]));
    assert_eq!(man.trim(), "/usr/share/man/man8/kvmd.8.gz");
    for file in [
        "/usr/lib/systemd/system/kvmd.service",
        "/usr/lib/systemd/system/kvmd-powerdown.service",
        "/etc/logrotate.d/kvmd",
    ] {
        assert!(Path::new(file).is_file(), "{file} not installed");
    }
    for unit in ["kvmd.service", "kvmd-powerdown.service"] {
        let verify = common::systemd_analyze()
            .arg("verify")
            .arg(format!("/usr/lib/systemd/system/{unit}"))
            .output()
            .expect("systemd-analyze");
        let said = String::from_utf8_lossy(&verify.stderr);
        assert!(
            verify.status.success() && !said.contains(unit),
            "systemd-analyze verify {unit}: {said}"
        );
    }
    // Its hardening, scored by systemd itself: exposure 1.5 of 10 ("OK")
    // today; above 2.0 fails (the threshold counts in tenths).
    let security = common::systemd_analyze()
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg("/usr/lib/systemd/system/kvmd.service")
        .output()
        .expect("systemd-analyze security");
    assert!(
        security.status.success(),
        "kvmd.service's exposure is above 2.0:\n{}",
        String::from_utf8_lossy(&security.stdout)
    );
    for unit in ["kvmd.service", "kvmd-powerdown.service"] {
        assert!(
            !Path::new("/etc/systemd/system/multi-user.target.wants")
                .join(unit)
                .exists(),
            "the package must not enable {unit}"
        );
    }
    // Started by systemd itself, its sandbox and all; and kvmd-ganeti's
    // restarts of a ganeti-kvmd that systemd runs.
    if !Path::new("/lib/systemd/systemd").exists() {
        skip("systemd not installed (tests/run.sh installs it)");
    } else {
        if common::qemu().is_some() {
            service_under_systemd();
            node_shutdown_under_systemd();
        }
        ganeti_unit_restarts_under_systemd(&ganeti_deb);
    }

    // A real one-node Ganeti cluster: kvmd-ganeti installed into it while
    // Debian's daemon runs (restarted onto kvmd), the scenarios run with
    // kvmd as ganeti-kvmd, then removed (restarted onto Debian's again).
    cluster_with_the_package(&ganeti_deb);

    // The Ganeti package: Debian's binary kept aside, kvmd in its place;
    // installed twice, so that its upgrade path runs too.
    run(Command::new("dpkg").arg("-i").arg(&ganeti_deb));
    run(Command::new("dpkg").arg("-i").arg(&ganeti_deb));
    let link = std::fs::read_link(GANETI_KVMD).expect("ganeti-kvmd is a link");
    assert_eq!(
        std::fs::canonicalize(Path::new(GANETI_KVMD)).ok(),
        Some(PathBuf::from("/usr/sbin/kvmd")),
        "{link:?}"
    );
    let diverted = format!("{GANETI_KVMD}.distrib");
    assert_eq!(
        sha256(&diverted),
        original,
        "Debian's binary, byte for byte"
    );
    let divert = stdout(Command::new("dpkg-divert").args(["--listpackage", GANETI_KVMD]));
    assert_eq!(divert.trim(), "kvmd-ganeti");
    let named = stdout(Command::new(GANETI_KVMD).arg("--version"));
    assert!(named.starts_with("ganeti-kvmd (kvmd)"), "{named}");
    // The doctor tells the package's diversion from one made by hand.
    let doctor = Command::new("/usr/sbin/kvmd")
        .args(["doctor", "--json"])
        .output()
        .expect("kvmd doctor runs");
    let doctor = String::from_utf8_lossy(&doctor.stdout);
    let said = format!("diverted by kvmd-ganeti: Debian's binary kept at {diverted}");
    assert!(doctor.contains(&said), "{said}\nnot in:\n{doctor}");

    // Removing the Ganeti package puts Debian's binary back at once.
    run(Command::new("dpkg").args(["--remove", "kvmd-ganeti"]));
    assert_eq!(sha256(GANETI_KVMD), original);
    assert!(!Path::new(&diverted).exists());
    run(Command::new("dpkg").args(["--purge", "kvmd-ganeti", "kvmd"]));

    assert_eq!(sha256(GANETI_KVMD), original);
    let divert = stdout(Command::new("dpkg-divert").args(["--listpackage", GANETI_KVMD]));
    assert_eq!(divert.trim(), "", "diversion left behind");
    let after = snapshot();
    let added: Vec<_> = after.difference(&before).collect();
    let removed: Vec<_> = before.difference(&after).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "purge left the machine changed: added {added:?}, removed {removed:?}"
    );
}

/// Boots a real systemd, as PID 1 of private namespaces on a throwaway
/// root (tests/systemd/boot.sh), and runs `checks` (a script beside it)
/// inside with `args`. `setup` fills the work directory first, which is
/// /kvmd-test inside. Returns the script's output and the work directory;
/// fails the test if it failed or printed `RESULT timeout`.
fn under_systemd(
    checks: &str,
    setup: impl FnOnce(&Path),
    args: &[&str],
) -> (String, tempfile::TempDir) {
    let work = common::tmpfs_dir("kvmd-package-systemd");
    setup(work.path());
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/systemd");
    let out = Command::new(here.join("boot.sh"))
        .arg(work.path())
        .arg(here.join(checks))
        .args(args)
        .output()
        .expect("tests/systemd/boot.sh");
    let results = String::from_utf8_lossy(&out.stdout).into_owned();
    let journal = std::fs::read_to_string(work.path().join("journal.txt")).unwrap_or_default();
    eprintln!("{checks} under systemd:\n{results}");
    assert!(
        out.status.success() && !results.contains("RESULT timeout"),
        "boot.sh {checks}: {}\n{results}{}\n---- journal ----\n{journal}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (results, work)
}

/// Every line of `want` is in `results`.
fn assert_results(results: &str, want: &[&str]) {
    for line in want {
        assert!(results.contains(line), "{line} missing:\n{results}");
    }
}

/// The installed kvmd.service started by real systemd: the unit's sandbox
/// applied for real, and kvmd still doing its work inside it, on real QEMU
/// guests (tests/systemd/kvmd-service.sh).
fn service_under_systemd() {
    let images = |work: &Path| {
        boot_image(work, "poweroff", &[program::POWER_OFF]);
        boot_image(work, "halt", &[]);
    };
    let args = ["/kvmd-test/poweroff.img", "/kvmd-test/halt.img"];
    let (results, _) = under_systemd("kvmd-service.sh", images, &args);
    assert_results(
        &results,
        &[
            "RESULT boot system=running",
            // Installed, never enabled: nothing starts it unless asked.
            "RESULT unit enabled=disabled active=inactive",
            // Type=notify: active only once kvmd said READY=1.
            "RESULT start rc=0 active=active status=\"watching /run/kvmd: 0 monitored\"",
            // No new privileges, a seccomp filter, CAP_DAC_OVERRIDE alone,
            // no network, / read-only.
            "RESULT sandbox nonewprivs=1 seccomp=2 capbnd=0000000000000002 netns=private root=ro",
            "RESULT status rc=0 watching=1",
            "RESULT user-poweroff qemu-exit=0 file=yes decided=\"user shutdown (guest-poweroff)",
            "RESULT sigkill file=no decided=\"not a user shutdown (no-shutdown)",
            "RESULT reload rc=0 same-pid=yes",
            "RESULT stop rc=0 active=inactive result=success",
        ],
    );
}

/// The node going down with kvmd-powerdown.service enabled: a real
/// systemd powers the system off while two guests that obey the ACPI
/// power button run in Ganeti's unit (tests/systemd/kvmd-powerdown.sh).
/// Each guest must be powered off cleanly, by its own S5 (its first
/// SHUTDOWN is the guest's, not the host-signal of SIGTERM from its unit's
/// stop; QEMU exits 0 on either, so the exit status alone cannot tell),
/// and decided the host's.
fn node_shutdown_under_systemd() {
    let image = |work: &Path| {
        boot_image(work, "obey", &[program::OBEY_BUTTON, program::POWER_OFF]);
    };
    let (results, work) = under_systemd("kvmd-powerdown.sh", image, &["/kvmd-test/obey.img"]);
    assert_results(
        &results,
        &[
            "RESULT boot system=running",
            "RESULT enabled kvmd=active powerdown=active",
            "RESULT guests monitored=2",
            // A stop or restart while the system runs presses nothing.
            "RESULT stopped-while-running said=2 powerdowns=0 decided=0 powerdown=active",
            "RESULT poweroff finished=yes",
        ],
    );
    let log = std::fs::read_to_string(work.path().join("kvmd-log/kvmd.log")).unwrap_or_default();
    for guest in ["g1", "g2"] {
        let exit = std::fs::read_to_string(work.path().join(format!("exits/{guest}"))).ok();
        assert_eq!(
            exit.as_deref().map(str::trim),
            Some("0"),
            "{guest}: QEMU did not end cleanly\n{log}"
        );
        let decided = log
            .lines()
            .find(|l| l.contains(&format!(" {guest}: decided ")))
            .unwrap_or_else(|| panic!("{guest} not decided:\n{log}"));
        assert!(
            decided.contains("decided not a user shutdown (host-intent)")
                && decided.contains("first SHUTDOWN guest=true reason=guest-shutdown")
                && decided.contains("POWERDOWN=")
                && decided.contains("intent by node-shutdown"),
            "{decided}"
        );
    }
    assert!(
        log.contains("powerdown-all (by node-shutdown): pressed the power button of 2 of 2"),
        "{log}"
    );
    eprintln!("kvmd's log through the node's shutdown:\n{log}");
}

/// kvmd-ganeti's maintainer scripts on a node whose ganeti-kvmd is run by
/// systemd (Ganeti's example unit): installing it restarts the unit onto
/// kvmd, removing it back onto Debian's binary, through
/// `deb-systemd-invoke try-restart` (tests/systemd/ganeti-kvmd-unit.sh).
/// dpkg runs inside the throwaway root: the host's package database and
/// files are untouched.
fn ganeti_unit_restarts_under_systemd(ganeti_deb: &Path) {
    let name = ganeti_deb.file_name().expect("deb name");
    let copy = |work: &Path| {
        std::fs::copy(ganeti_deb, work.join(name)).expect("copy kvmd-ganeti");
    };
    let inside = Path::new("/kvmd-test").join(name);
    let inside = inside.to_str().expect("deb path");
    let (results, _) = under_systemd("ganeti-kvmd-unit.sh", copy, &[inside]);
    assert_results(
        &results,
        &[
            "RESULT boot system=running",
            &format!("RESULT original rc=0 active=active exe={GANETI_KVMD} restarted=- failures=0"),
            "RESULT install rc=0 active=active exe=/usr/sbin/kvmd restarted=yes failures=0",
            "RESULT status rc=0 watching=1",
            &format!("RESULT remove rc=0 active=active exe={GANETI_KVMD} restarted=yes failures=0"),
        ],
    );
}

/// tests/cluster/one-node.sh on Debian's ganeti-kvmd, with kvmd-ganeti
/// installed into the running cluster and removed at its end: each time
/// Ganeti's running daemon must be restarted onto the other binary.
/// tests/cluster.rs checks every scenario; this, that the package's daemon
/// is kvmd in Ganeti.
fn cluster_with_the_package(ganeti_deb: &Path) {
    if !Path::new("/usr/sbin/gnt-cluster").exists() {
        return skip("ganeti not installed (tests/run.sh installs it)");
    }
    let work = common::tmpfs_dir("kvmd-package-cluster");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/one-node.sh");
    let out = run(Command::new(script)
        .arg("original")
        .arg(work.path())
        .env("ONE_NODE_INSTALL", ganeti_deb)
        .env("ONE_NODE_REMOVE", "kvmd-ganeti"));
    let results = String::from_utf8_lossy(&out.stdout);
    eprintln!("cluster with kvmd-ganeti:\n{results}");
    for line in [
        "RESULT init daemon=running",
        "RESULT install restarted=yes exe=/usr/sbin/kvmd attached=",
        "RESULT remove restarted=yes exe=/usr/lib/ganeti/3.0/usr/sbin/ganeti-kvmd attached=",
        "RESULT poweroff status=USER_down file=present",
        "RESULT sigterm status=ERROR_down file=absent",
        "RESULT reset status=ERROR_down file=absent",
    ] {
        assert!(results.contains(line), "{line} missing:\n{results}");
    }
}

/// The same .deb files on Debian 13, in a throwaway overlay of the cached
/// root (tests/common/trixie.rs): Debian 13's lintian, `apt install` next
/// to Ganeti 3.1, a real one-node Ganeti 3.1 cluster whose ganeti-kvmd is
/// the package's, a purge that leaves the root as it was, and a node
/// upgraded from Ganeti 3.0 to 3.1 with the package installed
/// (tests/trixie/packages.sh).
#[test]
fn packages_on_debian_13() {
    for tool in ["cargo-deb", "dpkg"] {
        if !have(tool) {
            return skip(&format!("{tool} not found (tests/run.sh installs it)"));
        }
    }
    // The turn first: building the root (the first time) must not overlap
    // the Debian 12 test's before-and-after comparison.
    let _turn = one_at_a_time();
    let Some(root) = common::trixie::root() else {
        return;
    };
    let (kvmd_deb, ganeti_deb) = debs();
    let work = common::tmpfs_dir("kvmd-package-trixie");
    let copy = |deb: &Path| -> String {
        let to = work.path().join(deb.file_name().expect("deb name"));
        std::fs::copy(deb, &to).expect("copy the package");
        to.to_string_lossy().into_owned()
    };
    let (kvmd_deb, ganeti_deb) = (copy(kvmd_deb), copy(ganeti_deb));
    let ganeti = |version: &str| -> String {
        let debs = root.join("kvmd-test-debs");
        let found = std::fs::read_dir(&debs)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("ganeti-haskell-{version}_")))
            })
            .unwrap_or_else(|| panic!("no ganeti-haskell-{version} .deb in {debs:?}"));
        copy(&found)
    };
    let (g30, g31) = (ganeti("3.0"), ganeti("3.1"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/trixie/packages.sh");
    let script = script.to_str().expect("utf-8 path");
    let out = common::trixie::enter(
        &root,
        work.path(),
        &[],
        &[script, &kvmd_deb, &ganeti_deb, &g30, &g31],
    );
    let results = String::from_utf8_lossy(&out.stdout);
    let said = String::from_utf8_lossy(&out.stderr);
    eprintln!("packages on Debian 13:\n{results}");
    assert!(out.status.success(), "{}\n{results}\n{said}", out.status);
    // Each line whole (up to its end, or to the attach field the cluster's
    // lines end with), so that a longer value cannot pass for the one asked.
    for line in [
        "RESULT lintian rc=0 errors-and-warnings=0\n",
        "RESULT install rc=0 path=/usr/sbin/kvmd distrib=same diverted=kvmd-ganeti,\n",
        "RESULT named kvmd\n",
        "RESULT remove rc=0 original=same diverted=\n",
        "RESULT by-hand rc=0 diverted= said=yes\n",
        "RESULT by-hand-undone original=same diverted=\n",
        "RESULT cluster-init daemon=running attached=",
        "RESULT cluster-install restarted=yes exe=/usr/sbin/kvmd attached=",
        "RESULT cluster-remove restarted=yes exe=/usr/lib/ganeti/3.1/usr/sbin/ganeti-kvmd attached=",
        "RESULT cluster-qa rc=0 ",
        "RESULT cluster-poweroff status=USER_down file=present attached=yes\n",
        "RESULT cluster-sigterm status=ERROR_down file=absent attached=yes\n",
        "RESULT cluster-reset status=ERROR_down file=absent attached=yes\n",
        "RESULT cluster rc=0\n",
        "RESULT purge rc=0 original=same diverted= machine=same\n",
        "RESULT upgrade-setup rc=0\n",
        "RESULT upgrade-start rc=0 g30=/usr/sbin/kvmd g31=absent runs=/usr/sbin/kvmd \
         diverted=kvmd-ganeti,\n",
        "RESULT upgrade-31 rc=0 g30=/usr/sbin/kvmd g31=/usr/sbin/kvmd \
         distrib31=same distrib30=same diverted=kvmd-ganeti,kvmd-ganeti,\n",
        "RESULT upgrade-remove-30 rc=0 g30=absent dir30=absent g31=/usr/sbin/kvmd \
         runs=/usr/sbin/kvmd diverted=kvmd-ganeti,\n",
        "RESULT upgrade-purge rc=0 original=same diverted=\n",
    ] {
        assert!(results.contains(line), "{line} missing:\n{results}\n{said}");
    }
}
