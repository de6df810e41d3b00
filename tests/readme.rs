//! The README stays true about configuration: its settings table names every environment
//! variable the configuration reads (issue 25), so a new one cannot go undocumented.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

/// Every `"NAME_LIKE_THIS"` literal in `src/config.rs` and `src/config/`, as the config reads
/// its environment through such names (`src/config/names.rs` and the section modules).
fn config_env_names() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("config.rs")];
    for e in std::fs::read_dir(src.join("config")).unwrap() {
        files.push(e.unwrap().path());
    }
    let literal = regex::Regex::new(r#""([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)""#).unwrap();
    let mut names = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        names.extend(literal.captures_iter(&text).map(|c| c[1].to_string()));
    }
    names
}

#[test]
fn the_settings_table_names_every_environment_variable() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("\n## Settings\n").expect("a Settings section");
    let section = &readme[start..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
    let names = config_env_names();
    assert!(names.contains("MAESTRA_LOCAL_ONLY"), "{names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !section.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the README's settings table: {missing:?}"
    );
}
