//! The docs are true: every command line shown in README.md and docs/ is exercised by
//! an end-to-end test, with the same subcommand and flags.

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

#[test]
fn every_documented_command_and_flag_is_exercised_by_a_test() {
    let root = workspace_root();
    let tested = [
        std::fs::read_to_string(root.join("tests/tests/xtask.rs")).unwrap(),
        std::fs::read_to_string(root.join("tests/tests/server.rs")).unwrap(),
    ]
    .concat();
    let mut checked = 0;
    for doc in ["README.md", "docs/database.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for line in documented_command_lines(&text) {
            let mut words = line.split_whitespace();
            let command = words.next().expect("a subcommand");
            assert!(
                tested.contains(&format!("\"{command}\"")),
                "{doc}: `{line}`: no test runs {command}"
            );
            for flag in words.filter(|w| w.starts_with('-')) {
                assert!(
                    tested.contains(&format!("\"{flag}\"")),
                    "{doc}: `{line}`: no test passes {flag}"
                );
            }
            checked += 1;
        }
    }
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
        commands, 10,
        "expected the ten db-* commands in xtask/src/flags.rs"
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
