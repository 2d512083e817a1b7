//! The README is a newcomer's way in: every subcommand `coherd --help`
//! lists must appear in its commands table.

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

#[test]
fn every_subcommand_is_in_the_readme_commands_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md at the workspace root");
    let table = readme
        .split("## Commands")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Commands section");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coherd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .expect("a command list")
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 10, "{help}");
    let missing: Vec<&&str> = commands
        .iter()
        .filter(|c| {
            !table.contains(&format!("| `coherd {c}")) && !table.contains(&format!("/ `{c}"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not in the README's commands table: {missing:?}"
    );
}
