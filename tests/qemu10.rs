//! The end-to-end suites once more, against Debian 13's QEMU 10.0: the very
//! `tests/e2e.rs` and `tests/intents.rs` binaries that ran against this
//! machine's QEMU, run inside a throwaway Debian 13 root
//! (tests/common/trixie.rs), so one test run covers both QEMU versions
//! with the same assertions.

mod common;

use std::process::Command;

/// The test binary `name` cargo built for this run.
fn test_binary(name: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["test", "--test", name, "--no-run", "--message-format=json"])
        .output()
        .expect("cargo test --no-run");
    assert!(
        out.status.success(),
        "cargo test --test {name} --no-run failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("cargo names the {name} binary"))
}

#[test]
fn the_end_to_end_suites_pass_against_qemu_10() {
    let Some(root) = common::trixie::root() else {
        return;
    };
    let work = common::tmpfs_dir("kvmd-qemu10");
    let version = common::trixie::enter(
        &root,
        work.path(),
        &[],
        &["qemu-system-x86_64", "--version"],
    );
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.contains("version 10.0"),
        "Debian 13's QEMU is 10.0: {version}"
    );
    for suite in ["e2e", "intents"] {
        let binary = test_binary(suite);
        // --test-threads=2: the two cores, as on the host.
        // CI=true inside: a test that would skip for want of a part fails.
        let out = common::trixie::enter(
            &root,
            work.path(),
            &[],
            &["env", "CI=true", &binary, "--test-threads=2"],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{}\n{suite} against QEMU 10:\n{stdout}", version.trim());
        assert!(
            out.status.success(),
            "the {suite} suite failed against QEMU 10 ({}):\n{stdout}\n{stderr}",
            out.status
        );
        assert!(stdout.contains("test result: ok."), "{stdout}");
    }
}
