//! No family module names another family's module (CI rule of the family layer). A family
//! reads other kinds through `resource::lookup` / `resource::refs_where` (their indexed
//! fields) and declares its references to them as relations; shared helpers live outside
//! `families/` (`resource`, `net`, `validate`, `params`, `testing`, ...).
//!
//! Every `.rs` file under `api/src/families/<family>/` (tests included) is scanned for a path
//! naming another family: `families::<other>` (also inside a `families::{...}` group),
//! `crate::<other>::` or `super::super::<other>`. Every registered family except the
//! command families of the core (below) must live there, so the scan covers them all.

use std::fs;
use std::path::Path;
use std::path::PathBuf;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The families: one folder (or file) each under `api/src/families/`.
fn families(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root)
        .expect("families dir")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            if p.is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs")
                    .filter(|n| *n != "mod")
                    .map(str::to_string)
            }
        })
        .collect();
    names.sort();
    names
}

/// Registered command families that are not resource families: the core's own modules
/// (`kv`, `job`, `audit`, `leader`, `call`), which may name the families they serve.
const CORE_FAMILIES: &[&str] = &["kv", "job", "audit", "leader", "call"];

/// Whether `word` occurs in `text` as a whole identifier.
fn names_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// Lines of `text` (outside comments) that name family `other`.
fn offending_lines(text: &str, other: &str) -> Vec<(usize, String)> {
    let needles = [
        format!("families::{other}::"),
        format!("families::{other};"),
        format!("crate::{other}::"),
        format!("super::super::{other}"),
    ];
    let mut group: Option<usize> = None;
    let mut found = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim_start().starts_with("//") {
            continue;
        }
        // Inside `families::{ ... }` (one line or several), a bare family name counts too.
        let mut in_group = group.is_some();
        let mut rest = l;
        if let Some(at) = l.find("families::{") {
            in_group = true;
            rest = &l[at + "families::{".len()..];
            group = Some(i);
        }
        let grouped = in_group && names_word(rest.split('}').next().unwrap_or(""), other);
        if group.is_some() && rest.contains('}') {
            group = None;
        }
        if grouped || needles.iter().any(|n| l.contains(n.as_str())) {
            found.push((i + 1, l.trim().to_string()));
        }
    }
    found
}

#[test]
fn every_registered_family_lives_under_families() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/families");
    let scanned = families(&root);
    let mut registered: Vec<String> = api::registry::FAMILIES
        .iter()
        .map(|f| f.name)
        .filter(|n| !CORE_FAMILIES.contains(n))
        .map(str::to_string)
        .collect();
    registered.sort();
    assert_eq!(
        scanned, registered,
        "the folders under {root:?} and the registered resource families differ"
    );
}

#[test]
fn no_family_imports_another_family() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/families");
    let names = families(&root);
    assert!(
        names.len() >= 2,
        "expected the families under {root:?}, found {names:?}"
    );
    let mut problems = Vec::new();
    for family in &names {
        let mut files = Vec::new();
        let dir = root.join(family);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(root.join(format!("{family}.rs")));
        }
        for file in files {
            let text = fs::read_to_string(&file).expect("read source");
            for other in names.iter().filter(|o| *o != family) {
                for (line, code) in offending_lines(&text, other) {
                    problems.push(format!(
                        "{}:{line}: family `{family}` names family `{other}`: {code}",
                        file.strip_prefix(&root).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} reference(s) across families (read other kinds through `resource::lookup`, \
         declare relations instead of calling cascades):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_check_catches_a_cross_family_path() {
    let src = "use crate::families::zone::Zone;\n// crate::zone:: in a comment is fine\n";
    assert_eq!(offending_lines(src, "zone").len(), 1);
    assert!(offending_lines(src, "cluster").is_empty());
    assert_eq!(
        offending_lines("let z = super::super::zone::KIND;", "zone").len(),
        1
    );
}

#[test]
fn the_check_catches_a_family_in_a_use_group() {
    let grouped = "use crate::families::{\n    cluster::Cluster,\n    zone,\n};\nlet zone = 1;\n";
    assert_eq!(
        offending_lines(grouped, "zone"),
        vec![(3, "zone,".to_string())]
    );
    assert_eq!(offending_lines(grouped, "cluster").len(), 1);
    assert!(offending_lines("use crate::families::{zoned};", "zone").is_empty());
}
