//! Tidy checks on this crate's own sources, in the style of rust-analyzer's: the layer
//! order that docs/ARCHITECTURE.md writes down holds in the code.
//!
//! - A top-level module imports (`crate::x`) only modules of lower layers.
//! - The submodules of one module never import each other in a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crate's `src/` directory.
fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layer table of docs/ARCHITECTURE.md: module name → layer number.
fn documented_layers() -> BTreeMap<String, u32> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ARCHITECTURE.md");
    let text = std::fs::read_to_string(&doc).expect("docs/ARCHITECTURE.md");
    let section = text
        .split("\n## Layers")
        .nth(1)
        .expect("a `## Layers` section in docs/ARCHITECTURE.md");
    let mut layers = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(layer), Some(modules)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Ok(layer) = layer.parse::<u32>() else {
            continue;
        };
        for module in modules.split(',') {
            layers.insert(module.trim().trim_matches('`').to_string(), layer);
        }
    }
    layers
}

/// The source without `//` comments (doc comments included).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names that `prefix` is followed by in `code`: `prefix::a`, and each first-level
/// name of `prefix::{a, b::c, d::{e}}`.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let needle = format!("{prefix}::");
    let mut rest = code;
    while let Some(at) = rest.find(&needle) {
        // `super::` inside `crate::x::super::` cannot happen; `a::crate::` neither.
        let before = rest[..at].chars().next_back();
        rest = &rest[at + needle.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(inner) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            for c in inner.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 || (depth == 1 && c == ',') {
                    names.extend(first_name(&item));
                    item.clear();
                    if depth == 0 {
                        break;
                    }
                } else if depth == 1 {
                    item.push(c);
                }
            }
        } else {
            names.extend(first_name(rest));
        }
    }
    names
}

/// The leading identifier of `text`, if any.
fn first_name(text: &str) -> Option<String> {
    let name: String = text
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Every `.rs` file below `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("a source directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// The top-level module a file belongs to (`None`: `lib.rs`, `main.rs`, this file).
fn top_module(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(src()).ok()?;
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (!["lib", "main", "tidy"].contains(&name.as_str())).then_some(name)
}

#[test]
fn every_module_imports_only_lower_layers() {
    let layers = documented_layers();
    let mut problems = Vec::new();
    for path in files(&src()) {
        let Some(module) = top_module(&path) else {
            continue;
        };
        let Some(&own) = layers.get(&module) else {
            problems.push(format!(
                "module `{module}` is missing from the layer table of docs/ARCHITECTURE.md"
            ));
            continue;
        };
        for used in names_after(&code(&path), "crate") {
            if used == module {
                continue;
            }
            match layers.get(&used) {
                Some(&layer) if layer < own => {}
                Some(&layer) => problems.push(format!(
                    "{}: `{module}` (layer {own}) uses `crate::{used}` (layer {layer}); only lower layers may be used",
                    path.strip_prefix(src()).unwrap_or(&path).display()
                )),
                None => problems.push(format!(
                    "{}: `crate::{used}` is not in the layer table",
                    path.strip_prefix(src()).unwrap_or(&path).display()
                )),
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn sibling_submodules_import_each_other_without_cycles() {
    let mut problems = Vec::new();
    let mut dirs: BTreeSet<PathBuf> = files(&src())
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    dirs.remove(&src());
    for dir in dirs {
        let parent = dir
            .strip_prefix(src())
            .unwrap_or(&dir)
            .to_string_lossy()
            .replace('/', "::");
        let siblings: BTreeSet<String> = files(&dir)
            .iter()
            .filter(|p| p.parent() == Some(dir.as_path()))
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().to_string()))
            .filter(|name| name != "mod")
            .collect();
        let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for name in &siblings {
            let code = code(&dir.join(format!("{name}.rs")));
            let mut used = names_after(&code, "super");
            used.extend(names_after(&code, &format!("crate::{parent}")));
            used.retain(|u| u != name && siblings.contains(u));
            uses.insert(name.clone(), used);
        }
        // A cycle: a sibling that reaches itself.
        for start in &siblings {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<&String> = uses[start].iter().collect();
            while let Some(next) = todo.pop() {
                if next == start {
                    problems.push(format!("{parent}::{start} is part of an import cycle"));
                    break;
                }
                if seen.insert(next) {
                    todo.extend(uses[next].iter());
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_import_reader_sees_braces_and_paths() {
    let code = "use crate::{db::{A, B}, url};\nlet x = crate::pg::f();\nuse super::value::Kind;";
    let crate_names: Vec<String> = names_after(code, "crate").into_iter().collect();
    assert_eq!(crate_names, ["db", "pg", "url"]);
    let super_names: Vec<String> = names_after(code, "super").into_iter().collect();
    assert_eq!(super_names, ["value"]);
}
