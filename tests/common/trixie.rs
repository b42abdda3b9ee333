//! A Debian 13 ("trixie") root for the tests: QEMU 10.0, Ganeti 3.1 and
//! Debian 13's lintian, where this machine has Debian 12's. The root is
//! built once with debootstrap and cached outside the clone
//! (`tests/trixie/root.sh`); each use runs inside a throwaway overlay of it,
//! in private namespaces, and leaves both the cache and the host as they
//! were (`tests/trixie/enter.sh`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/trixie")
        .join(name)
}

/// The cached root, built first if need be; `None` (the test skipped) when
/// it cannot be had outside CI. Under CI (`CI=true`) not having it fails.
pub fn root() -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        super::skip("not root: the Debian 13 root needs debootstrap and namespaces");
        return None;
    }
    let out = Command::new(script("root.sh"))
        .output()
        .expect("tests/trixie/root.sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || path.is_empty() {
        super::skip(&format!(
            "no Debian 13 root (tests/trixie/root.sh: {}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    Some(PathBuf::from(path))
}

/// Runs `command` inside a throwaway overlay of `root`, with `work` (a host
/// directory) and the clone at their own paths; `env` names variables to
/// pass through.
pub fn enter(root: &Path, work: &Path, env: &[&str], command: &[&str]) -> Output {
    Command::new(script("enter.sh"))
        .arg(root)
        .arg(work)
        .arg("--")
        .args(command)
        .env("ENTER_ENV", env.join(" "))
        .output()
        .expect("tests/trixie/enter.sh")
}
