//! Ganeti's start-up conditions, read from its ssconf files.
//!
//! This module owns the question "should kvmd run on this node at all?".
//! Like `ganeti-kvmd`, it runs only when `ssconf_hypervisor_list` lists
//! `kvm`, `ssconf_enabled_user_shutdown` says `True`, and
//! `ssconf_node_vm_capable` says `True` for this node. Anything else — a
//! missing file included — is a [`Refusal`]: the caller logs it at INFO and
//! exits with status 0, as the original does.

use std::ffi::CStr;
use std::fmt;
use std::path::{Path, PathBuf};

const HYPERVISOR_LIST: &str = "ssconf_hypervisor_list";
const USER_SHUTDOWN: &str = "ssconf_enabled_user_shutdown";
const VM_CAPABLE: &str = "ssconf_node_vm_capable";

/// Why kvmd is not needed on this node.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Unreadable { path: PathBuf, error: String },
    NoKvm { path: PathBuf },
    UserShutdownDisabled { path: PathBuf },
    NotVmCapable { path: PathBuf, node: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unreadable { path, error } => {
                write!(f, "{}: {error}; not running", path.display())
            }
            Refusal::NoKvm { path } => write!(
                f,
                "KVM is not an enabled hypervisor ({}); not running",
                path.display()
            ),
            Refusal::UserShutdownDisabled { path } => write!(
                f,
                "user shutdown is not enabled ({}); not running",
                path.display()
            ),
            Refusal::NotVmCapable { path, node } => write!(
                f,
                "node {node:?} is not VM capable ({}); not running",
                path.display()
            ),
        }
    }
}

/// Checks the three conditions, in the original's order, for `node`.
pub fn check(dir: &Path, node: &str) -> Result<(), Refusal> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map(|text| (text, path.clone()))
            .map_err(|e| Refusal::Unreadable {
                path,
                error: e.to_string(),
            })
    };
    let (hypervisors, path) = read(HYPERVISOR_LIST)?;
    if !lists_kvm(&hypervisors) {
        return Err(Refusal::NoKvm { path });
    }
    let (enabled, path) = read(USER_SHUTDOWN)?;
    if !user_shutdown_enabled(&enabled) {
        return Err(Refusal::UserShutdownDisabled { path });
    }
    let (capable, path) = read(VM_CAPABLE)?;
    match vm_capable(&capable, node) {
        Some(true) => Ok(()),
        _ => Err(Refusal::NotVmCapable {
            path,
            node: node.to_owned(),
        }),
    }
}

/// Whether `ssconf_hypervisor_list`'s text lists `kvm`.
pub(crate) fn lists_kvm(text: &str) -> bool {
    text.lines().any(|line| line.trim() == "kvm")
}

/// Whether `ssconf_enabled_user_shutdown`'s text says `True`.
pub(crate) fn user_shutdown_enabled(text: &str) -> bool {
    text.trim() == "True"
}

/// What `ssconf_node_vm_capable`'s text says of `node`; `None`: not listed.
pub(crate) fn vm_capable(text: &str, node: &str) -> Option<bool> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(name, _)| name.trim() == node)
        .map(|(_, value)| value.trim() == "True")
}

/// The file names, for those who read them one by one (`kvmd doctor`).
pub(crate) const FILES: [&str; 3] = [HYPERVISOR_LIST, USER_SHUTDOWN, VM_CAPABLE];

/// This node's name as Ganeti knows it: what Python's `socket.getfqdn()`
/// (and so Ganeti) says — the host name resolved to an address and that
/// address resolved back to a name; else the canonical name of the host
/// name; else the bare host name. `GANETI_HOSTNAME`, when set, wins, as in
/// Ganeti (virtual clusters). (On a host whose /etc/hosts maps several
/// names to 127.0.0.1 that is `localhost`, as `ganeti-kvmd` finds too.)
pub fn node_name() -> String {
    // Ganeti's virtual clusters name each node through the environment.
    if let Some(name) = std::env::var("GANETI_HOSTNAME")
        .ok()
        .filter(|n| !n.is_empty())
    {
        return name;
    }
    let host = nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    fully_qualified(&host).unwrap_or(host)
}

fn fully_qualified(host: &str) -> Option<String> {
    use nix::libc;
    let host = std::ffi::CString::new(host).ok()?;
    // SAFETY: all-zero is a valid `addrinfo` hint (null pointers, zeros).
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_CANONNAME;
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut found: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C string, hints and out-pointer; freed below.
    let status = unsafe { libc::getaddrinfo(host.as_ptr(), std::ptr::null(), &hints, &mut found) };
    if status != 0 || found.is_null() {
        return None;
    }
    let mut reverse = [0 as libc::c_char; libc::NI_MAXHOST as usize];
    // SAFETY: getaddrinfo succeeded, so `found` points to a valid entry
    // whose address and canonical name (null or a C string) are read
    // before the list is freed.
    let name = unsafe {
        let first = &*found;
        let status = libc::getnameinfo(
            first.ai_addr,
            first.ai_addrlen,
            reverse.as_mut_ptr(),
            reverse.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        );
        let name = if status == 0 {
            Some(CStr::from_ptr(reverse.as_ptr()))
        } else {
            (!first.ai_canonname.is_null()).then(|| CStr::from_ptr(first.ai_canonname))
        }
        .map(|name| name.to_string_lossy().into_owned());
        libc::freeaddrinfo(found);
        name
    };
    name.filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn ssconf(
        hypervisors: Option<&str>,
        enabled: Option<&str>,
        capable: Option<&str>,
    ) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in [
            (HYPERVISOR_LIST, hypervisors),
            (USER_SHUTDOWN, enabled),
            (VM_CAPABLE, capable),
        ] {
            if let Some(text) = text {
                fs::write(dir.path().join(name), text).expect("write");
            }
        }
        dir
    }

    const NODE: &str = "node1.example.com";
    const CAPABLE: &str = "node0.example.com=False\nnode1.example.com=True\n";

    #[test]
    fn runs_when_all_three_say_so() {
        let dir = ssconf(Some("xen-pvm\nkvm\n"), Some("True\n"), Some(CAPABLE));
        assert_eq!(check(dir.path(), NODE), Ok(()));
    }

    #[test]
    fn each_missing_file_is_a_refusal_naming_it() {
        for missing in 0..3 {
            let mut texts = [Some("kvm\n"), Some("True\n"), Some(CAPABLE)];
            texts[missing] = None;
            let dir = ssconf(texts[0], texts[1], texts[2]);
            let refusal = check(dir.path(), NODE).expect_err("refused");
            let name = [HYPERVISOR_LIST, USER_SHUTDOWN, VM_CAPABLE][missing];
            assert!(matches!(&refusal, Refusal::Unreadable { path, .. } if path.ends_with(name)));
            assert!(refusal.to_string().contains(name), "{refusal}");
        }
    }

    #[test]
    fn each_no_is_a_refusal() {
        let dir = ssconf(Some("xen-pvm\nkvmx\n"), Some("True"), Some(CAPABLE));
        assert!(matches!(
            check(dir.path(), NODE),
            Err(Refusal::NoKvm { .. })
        ));
        let dir = ssconf(Some("kvm"), Some("False\n"), Some(CAPABLE));
        assert!(matches!(
            check(dir.path(), NODE),
            Err(Refusal::UserShutdownDisabled { .. })
        ));
        let dir = ssconf(Some("kvm"), Some("True"), Some(CAPABLE));
        assert!(matches!(
            check(dir.path(), "node0.example.com"),
            Err(Refusal::NotVmCapable { .. })
        ));
        assert!(matches!(
            check(dir.path(), "node9.example.com"),
            Err(Refusal::NotVmCapable { .. })
        ));
    }

    #[test]
    fn node_name_is_pythons_getfqdn() {
        // Ganeti is Python: its idea of this node's name is the reference.
        let python = std::process::Command::new("python3")
            .args(["-c", "import socket; print(socket.getfqdn())"])
            .output();
        let name = node_name();
        assert!(!name.is_empty());
        if let Some(out) = python.ok().filter(|out| out.status.success()) {
            assert_eq!(name, String::from_utf8_lossy(&out.stdout).trim());
        }
    }
}
