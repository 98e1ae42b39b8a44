//! No family module names another family's module (CI rule of the family layer). A family
//! reads other kinds through `resource::lookup` / `resource::refs_where` (their indexed
//! fields) and declares its references to them as relations; shared helpers live outside
//! `families/` (`resource`, `net`, `validate`, `params`, `testing`, ...).
//!
//! Every `.rs` file under `api/src/families/<family>/` (tests included) is scanned for a path
//! naming another family: `families::<other>`, `crate::<other>::` or `super::super::<other>`.

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

/// Lines of `text` (outside comments) that name family `other`.
fn offending_lines(text: &str, other: &str) -> Vec<(usize, String)> {
    let needles = [
        format!("families::{other}::"),
        format!("families::{other};"),
        format!("crate::{other}::"),
        format!("super::super::{other}"),
    ];
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| needles.iter().any(|n| l.contains(n.as_str())))
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .collect()
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
