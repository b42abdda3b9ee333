//! What kvmd trusts, checked once at start-up as sshd and sudo check
//! their files (the doctor asks the same checks):
//! - `--on-verdict`'s program: an absolute path to a regular, executable
//!   file owned by root (or kvmd's own user) and not writable by group or
//!   others, in directories with the same property. Anyone who could
//!   change it could run anything as kvmd.
//! - the state directory, at every start, hooks or not: owned likewise
//!   and writable by no one else. Whoever could write there could forge
//!   intents and evidence (choose verdicts) and hooks to run.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The program's path, resolved (symlinks followed), if it is safe;
/// otherwise why not, naming the path.
pub fn check(program: &Path) -> Result<PathBuf, String> {
    let says = |why: String| format!("--on-verdict {}: {why}", program.display());
    if !program.is_absolute() {
        return Err(says("must be an absolute path".to_owned()));
    }
    let real = fs::canonicalize(program).map_err(|e| says(e.to_string()))?;
    let meta = fs::metadata(&real).map_err(|e| says(e.to_string()))?;
    if !meta.is_file() {
        return Err(says("is not a regular file".to_owned()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(says("is not executable".to_owned()));
    }
    let trusted = [0, nix::unistd::geteuid().as_raw()];
    safe(&real, &meta, &trusted).map_err(&says)?;
    let mut dir = real.parent();
    while let Some(d) = dir {
        let meta = fs::metadata(d).map_err(|e| says(format!("{}: {e}", d.display())))?;
        safe(d, &meta, &trusted).map_err(&says)?;
        dir = d.parent();
    }
    Ok(real)
}

/// The state directory: what is in it decides verdicts and runs programs.
/// Its `<instance>.intent` files make a stop the host's, its `.state`
/// files carry evidence across a restart, and its `<instance>.hook` files
/// say which hooks run again, as root, and which process groups a
/// restarted kvmd ends. When it exists it must be root's (or kvmd's
/// user's) and writable by no one else (kvmd makes it so: 0700); checked
/// at every start, as sshd checks its files.
pub fn check_state_dir(dir: &Path) -> Result<(), String> {
    check_state_dir_of(dir, nix::unistd::geteuid().as_raw())
}

/// [`check_state_dir`] for a kvmd that runs as `uid` (the doctor asks it
/// for the running daemon's user, not its own).
pub(crate) fn check_state_dir_of(dir: &Path, uid: u32) -> Result<(), String> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("state directory {}: {e}", dir.display())),
    };
    if !meta.is_dir() {
        return Err(format!(
            "state directory {} is not a directory",
            dir.display()
        ));
    }
    safe(dir, &meta, &[0, uid]).map_err(|why| format!("state directory: {why}"))
}

/// Owned by a trusted user and writable by no one else.
fn safe(path: &Path, meta: &fs::Metadata, trusted: &[u32]) -> Result<(), String> {
    if !trusted.contains(&meta.uid()) {
        return Err(format!(
            "{} is owned by uid {}, not root (or kvmd's own user)",
            path.display(),
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:04o})",
            path.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A directory whose ancestors are all root's and not group-writable
    /// (a temporary directory under /tmp would fail: /tmp is world
    /// writable), made under the build's target directory.
    fn safe_dir() -> Option<tempfile::TempDir> {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&base).ok()?;
        let dir = tempfile::tempdir_in(&base).ok()?;
        std::fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).ok()?;
        // Only meaningful where every ancestor is safe.
        let ok = dir
            .path()
            .ancestors()
            .skip(1)
            .all(|a| fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o022 == 0));
        ok.then_some(dir)
    }

    fn program(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join("hook");
        fs::write(&path, "#!/bin/sh\nexit 0\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn refuses_what_someone_else_could_change() {
        assert!(
            check(Path::new("relative/hook"))
                .expect_err("relative")
                .contains("must be an absolute path")
        );
        assert!(
            check(Path::new("/nonexistent/kvmd-hook"))
                .expect_err("missing")
                .contains("No such file")
        );
        let Some(dir) = safe_dir() else {
            eprintln!("SKIPPED: the checkout's directories are group- or world-writable");
            return;
        };
        let ok = program(dir.path(), 0o755);
        assert_eq!(check(&ok), Ok(fs::canonicalize(&ok).expect("real")));
        let writable = program(dir.path(), 0o775);
        assert!(
            check(&writable)
                .expect_err("g+w")
                .contains("writable by group or others")
        );
        let not_exec = program(dir.path(), 0o644);
        assert!(check(&not_exec).expect_err("-x").contains("not executable"));
        assert!(
            check(dir.path())
                .expect_err("dir")
                .contains("not a regular file")
        );
        let ok = program(dir.path(), 0o755);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(
            check(&ok)
                .expect_err("dir o+w")
                .contains("writable by group or others")
        );
    }
}
