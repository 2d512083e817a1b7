//! Names the commit the binary was built from, for `coherd --version`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
    let date = git(&["log", "-1", "--format=%cs"]);
    let version = match (commit, date) {
        (Some(c), Some(d)) => format!(
            "{} (commit {c}{}, {d})",
            env!("CARGO_PKG_VERSION"),
            if dirty { " with local changes" } else { "" }
        ),
        _ => format!("{} (commit unknown)", env!("CARGO_PKG_VERSION")),
    };
    println!("cargo:rustc-env=COHERD_VERSION={version}");
    for path in [
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/packed-refs",
        "../../.git/index",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
}
