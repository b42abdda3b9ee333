//! The release's paperwork agrees with itself: Cargo.toml's version is the
//! newest in CHANGELOG.md, the license is declared the same way in
//! Cargo.toml, LICENSE and the packages' copyright file, and
//! `contrib/debian/changelog` is CHANGELOG.md in Debian's form.
//!
//! After editing CHANGELOG.md, `KVMD_BLESS=1 cargo test --test release`
//! writes the Debian changelog anew.

use std::fs;
use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A release in CHANGELOG.md: `## [1.0.0] - 2026-12-04`, then `### Added`
/// and the like, each with `- ` items (continued on indented lines).
#[derive(Debug)]
struct Release {
    version: String,
    date: (i64, u32, u32),
    items: Vec<(String, String)>,
}

fn releases(changelog: &str) -> Vec<Release> {
    let mut releases: Vec<Release> = Vec::new();
    let mut kind = String::new();
    for line in changelog.lines() {
        if let Some(heading) = line.strip_prefix("## [") {
            let (version, rest) = heading.split_once(']').expect("## [version]");
            if version == "Unreleased" {
                continue;
            }
            let date = rest.trim_start_matches(" - ").trim();
            let mut parts = date.split('-').map(|p| p.parse::<i64>().expect("date"));
            let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
                panic!("{version}: no YYYY-MM-DD date");
            };
            releases.push(Release {
                version: version.to_owned(),
                date: (y, m as u32, d as u32),
                items: Vec::new(),
            });
        } else if let Some(heading) = line.strip_prefix("### ") {
            kind = heading.trim().to_owned();
        } else if let Some(release) = releases.last_mut() {
            if let Some(item) = line.strip_prefix("- ") {
                release.items.push((kind.clone(), item.trim().to_owned()));
            } else if line.starts_with("  ") && !line.trim().is_empty() {
                let (_, item) = release.items.last_mut().expect("a continued item");
                item.push(' ');
                item.push_str(line.trim());
            }
        }
    }
    releases
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date as Debian's changelog trailer has it (RFC 5322), at noon UTC.
fn rfc5322((y, m, d): (i64, u32, u32)) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let weekday = DAYS[days_from_civil(y, m, d).rem_euclid(7) as usize];
    format!(
        "{weekday}, {d:02} {} {y} 12:00:00 +0000",
        MONTHS[m as usize - 1]
    )
}

/// `text` as a changelog bullet, words wrapped within 78 columns.
fn bullet(text: &str) -> String {
    let mut out = String::from("  *");
    let mut column = out.len();
    for word in text.split_whitespace() {
        if column + 1 + word.len() > 78 {
            out.push_str("\n   ");
            column = 3;
        }
        out.push(' ');
        out.push_str(word);
        column += 1 + word.len();
    }
    out.push('\n');
    out
}

fn maintainer() -> String {
    let cargo = read("Cargo.toml");
    let line = cargo
        .lines()
        .find_map(|l| l.strip_prefix("maintainer = "))
        .expect("maintainer in [package.metadata.deb]");
    line.trim_matches('"').to_owned()
}

/// CHANGELOG.md in Debian's form, newest first, revision -1 throughout.
fn debian_changelog(releases: &[Release]) -> String {
    let maintainer = maintainer();
    let mut out = String::new();
    for (n, release) in releases.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "kvmd ({}-1) unstable; urgency=medium\n\n",
            release.version
        ));
        for (kind, item) in &release.items {
            out.push_str(&bullet(&format!("{kind}: {item}")));
        }
        out.push_str(&format!("\n -- {maintainer}  {}\n", rfc5322(release.date)));
    }
    out
}

#[test]
fn the_debian_changelog_is_made_from_changelog_md() {
    let releases = releases(&read("CHANGELOG.md"));
    assert!(!releases.is_empty(), "CHANGELOG.md has no release");
    for release in &releases {
        assert!(
            !release.items.is_empty(),
            "{} lists nothing",
            release.version
        );
    }
    let want = debian_changelog(&releases);
    let path = repo("contrib/debian/changelog");
    if std::env::var_os("KVMD_BLESS").is_some() {
        fs::write(&path, &want).expect("write contrib/debian/changelog");
    }
    let have = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "contrib/debian/changelog is not CHANGELOG.md's; \
         KVMD_BLESS=1 cargo test --test release writes it:\n{want}"
    );
}

#[test]
fn the_version_is_the_newest_release() {
    let releases = releases(&read("CHANGELOG.md"));
    assert_eq!(releases[0].version, env!("CARGO_PKG_VERSION"));
    // The man page's header names it too.
    let man = read("contrib/kvmd.8");
    let header = format!("\"kvmd {}\"", env!("CARGO_PKG_VERSION"));
    assert!(
        man.lines().next().is_some_and(|l| l.contains(&header)),
        "contrib/kvmd.8's .TH must say {header}"
    );
    // kvmd-ganeti depends on this very kvmd: cargo-deb does not fill it in.
    let own = format!("kvmd (= {}-1)", env!("CARGO_PKG_VERSION"));
    assert!(read("Cargo.toml").contains(&own), "kvmd-ganeti: {own}");
}

#[test]
fn the_license_is_bsd_2_clause_everywhere() {
    let cargo = read("Cargo.toml");
    assert!(
        cargo.contains("\nlicense = \"BSD-2-Clause\"\n"),
        "Cargo.toml"
    );
    // The same words in LICENSE and in the copyright file's License
    // paragraph (Debian's form indents it and marks blank lines with ".").
    let words = |text: &str| -> Vec<String> {
        text.split_whitespace()
            .filter(|w| *w != ".")
            .map(str::to_owned)
            .collect()
    };
    let license = read("LICENSE");
    let clauses = license
        .split_once("Redistribution")
        .map(|(_, rest)| format!("Redistribution{rest}"))
        .expect("LICENSE's clauses");
    let copyright = read("contrib/debian/copyright");
    assert!(copyright.starts_with(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    ));
    assert!(copyright.contains("\nFiles: *\n"));
    let paragraph = copyright
        .split_once("\nLicense: BSD-2-Clause\n Redistribution")
        .map(|(_, rest)| format!("Redistribution{rest}"))
        .expect("a License: BSD-2-Clause paragraph with its text");
    assert_eq!(words(&paragraph), words(&clauses));
    let holder = "Copyright (c) 2026, the kvmd developers";
    assert!(license.contains(holder), "LICENSE: {holder}");
    assert!(copyright.contains("Copyright: 2026, the kvmd developers"));
}

#[test]
fn dates_are_rendered_as_debian_wants_them() {
    assert_eq!(rfc5322((1970, 1, 1)), "Thu, 01 Jan 1970 12:00:00 +0000");
    assert_eq!(rfc5322((2026, 12, 4)), "Fri, 04 Dec 2026 12:00:00 +0000");
    assert_eq!(rfc5322((2000, 2, 29)), "Tue, 29 Feb 2000 12:00:00 +0000");
}

/// Every reason code kvmd can give is documented in README's table of
/// reasons and in kvmd(8), in the same order, each said to be the user's
/// or not as kvmd has it, and neither lists a code kvmd does not give:
/// the list is kept in one place in the code (`ReasonCode::ALL`, itself
/// checked against `Why::code` by a unit test).
#[test]
fn the_reason_tables_list_exactly_the_reason_codes() {
    use kvmd_core::decision::{ReasonCode, VerdictKind};
    let codes: std::collections::BTreeSet<&str> =
        ReasonCode::ALL.iter().map(|code| code.as_str()).collect();
    let listed: Vec<(String, VerdictKind)> = ReasonCode::ALL
        .iter()
        .map(|code| (code.as_str().to_owned(), code.verdict()))
        .collect();
    // README: the first column of the table under "### Reasons", each
    // code in backquotes (some rows name several); the second says
    // `user` or `not user`.
    let readme = read("README.md");
    let section = readme
        .split("### Reasons")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("README has a Reasons section");
    let mut in_readme = std::collections::BTreeSet::new();
    let mut readme_rows = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split('|').nth(1).unwrap_or_default();
        let verdict = match row.split('|').nth(2).map(str::trim) {
            Some("user") => VerdictKind::User,
            Some("not user") => VerdictKind::NotUser,
            other => panic!("README's Reasons: {other:?} in {row:?}"),
        };
        for code in first.split('`').skip(1).step_by(2) {
            in_readme.insert(code.to_owned());
            readme_rows.push((code.to_owned(), verdict));
        }
    }
    // kvmd(8): the tagged paragraphs under ".SS Reasons", `.B code` or
    // `.BR code ", " code ...`, with roff's escaped hyphens; a user
    // shutdown's paragraph starts `(user)`.
    let man = read("contrib/kvmd.8");
    let section = man
        .split(".SS Reasons")
        .nth(1)
        .and_then(|rest| rest.split("\n.SS ").next())
        .expect("kvmd.8 has a Reasons section");
    let mut in_man = std::collections::BTreeSet::new();
    let mut man_rows = Vec::new();
    let lines: Vec<&str> = section.lines().collect();
    for tagged in lines.windows(3) {
        if tagged[0] != ".TP" {
            continue;
        }
        let tag = tagged[1]
            .trim_start_matches(".BR ")
            .trim_start_matches(".B ")
            .replace("\\-", "-");
        let verdict = VerdictKind::from_user(tagged[2].starts_with("(user)"));
        for code in tag
            .split('"')
            .filter(|p| !p.trim().is_empty() && p.trim() != ",")
        {
            in_man.insert(code.trim().to_owned());
            man_rows.push((code.trim().to_owned(), verdict));
        }
    }
    let codes: std::collections::BTreeSet<String> = codes.iter().map(|c| c.to_string()).collect();
    assert_eq!(in_readme, codes, "README's table of reasons");
    assert_eq!(in_man, codes, "kvmd.8's Reasons");
    assert_eq!(readme_rows, listed, "README's table of reasons, in order");
    assert_eq!(man_rows, listed, "kvmd.8's Reasons, in order");
}
