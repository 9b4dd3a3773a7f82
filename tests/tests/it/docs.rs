//! The docs are true: every command line shown in README.md and docs/ is run by an
//! end-to-end test, with the same subcommand and flags in one invocation.

use tests::workspace_root;

/// `cargo xtask ...` lines inside the shell and cron blocks of a Markdown file.
fn documented_command_lines(markdown: &str) -> Vec<String> {
    let mut in_block = false;
    let mut lines = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block && let Some(at) = line.find("cargo xtask ") {
            let command = line[at + "cargo xtask ".len()..]
                .split('#')
                .next()
                .unwrap_or("");
            let command = command.split(">>").next().unwrap_or("").trim();
            lines.push(command.to_string());
        }
    }
    lines
}

/// The argument lists the end-to-end tests pass to xtask: every `&["db-...", ...]`
/// literal in `tests/tests/it/*.rs`, as lists of words.
fn tested_invocations() -> Vec<Vec<String>> {
    let dir = workspace_root().join("tests/tests/it");
    let mut invocations = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(path).unwrap();
        for (at, _) in source.match_indices("&[\"db-") {
            let list = &source[at + 2..];
            let list = &list[..list.find(']').unwrap_or(list.len())];
            let words: Vec<String> = list
                .split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            invocations.push(words);
        }
    }
    invocations
}

#[test]
fn every_documented_command_line_is_run_by_a_test_with_the_same_flags() {
    let root = workspace_root();
    let invocations = tested_invocations();
    let mut checked = 0;
    let mut untested = Vec::new();
    for doc in ["README.md", "docs/database.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for line in documented_command_lines(&text) {
            let mut words = line.split_whitespace();
            let command = words.next().expect("a subcommand");
            let flags: Vec<&str> = words.filter(|w| w.starts_with('-')).collect();
            let run = invocations.iter().any(|args| {
                args.first().map(String::as_str) == Some(command)
                    && flags.iter().all(|f| args.iter().any(|a| a == f))
            });
            if !run {
                untested.push(format!("{doc}: `{line}`"));
            }
            checked += 1;
        }
    }
    assert!(
        untested.is_empty(),
        "documented command lines that no test runs with the same flags in one invocation:\n{}",
        untested.join("\n")
    );
    assert!(
        checked >= 15,
        "only {checked} documented command lines found"
    );
}

#[test]
fn the_command_table_lists_every_xtask_command() {
    let root = workspace_root();
    let guide = std::fs::read_to_string(root.join("docs/database.md")).unwrap();
    let flags = std::fs::read_to_string(root.join("xtask/src/flags.rs")).unwrap();
    let mut commands = 0;
    for line in flags.lines().map(str::trim) {
        if let Some(variant) = line.strip_prefix("Db").and_then(|l| l.split('(').next())
            && line.contains("(Db")
        {
            let command = format!("db-{}", kebab(variant));
            assert!(
                guide.contains(&format!("`cargo xtask {command}")),
                "docs/database.md lacks {command}"
            );
            commands += 1;
        }
    }
    assert_eq!(
        commands, 14,
        "expected the fourteen db-* commands in xtask/src/flags.rs"
    );
}

fn kebab(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The lines between `// ANCHOR: name` and `// ANCHOR_END: name` in `source`, without
/// their common indentation.
fn anchored_region(source: &str, name: &str) -> Option<String> {
    let lines: Vec<&str> = source.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == format!("// ANCHOR: {name}"))?;
    let end = lines
        .iter()
        .position(|l| l.trim() == format!("// ANCHOR_END: {name}"))?;
    let region = &lines[start + 1..end];
    let indent = region
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    Some(
        region
            .iter()
            .map(|l| l.get(indent..).unwrap_or("").trim_end())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[test]
fn the_readme_endpoint_pattern_is_the_tested_example() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut checked = 0;
    for (at, _) in readme.match_indices("<!-- ") {
        let marker = &readme[at + 5..];
        let Some((reference, rest)) = marker.split_once(" -->\n```rust\n") else {
            continue;
        };
        let (path, name) = reference.split_once(": ").expect("<!-- path: anchor -->");
        let block = &rest[..rest.find("\n```").expect("a closed code block")];
        let source = std::fs::read_to_string(root.join(path)).unwrap();
        let region =
            anchored_region(&source, name).unwrap_or_else(|| panic!("{path} has no ANCHOR {name}"));
        assert_eq!(
            block, region,
            "README.md's copy of {path}: {name} drifted; copy it again"
        );
        checked += 1;
    }
    assert!(
        checked >= 5,
        "only {checked} copied blocks found in README.md"
    );
}
