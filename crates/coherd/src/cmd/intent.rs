//! `coherd intent`: check an intent file here, or read and replace the one a
//! running server holds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use coherd_model::{Intent, IntentError};
use reqwest::{Method, StatusCode, header};
use serde::Serialize;

use crate::client::{Client, ClientError, Need, ServerArgs, runtime};

const ADMIN: Need = Need {
    scope: "admin",
    action: "replace the intent",
};

/// Check, read or replace the intent (what the operators want per service).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    coherd intent check intent.yaml\n  \
    coherd intent get > intent.yaml\n  \
    coherd intent put intent.yaml --token \"$ADMIN_TOKEN\"\n  \
    coherd intent suggest > intent.yaml")]
pub(crate) struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Validate an intent file here; print every error with its line (exit 1 on errors).
    Check(CheckArgs),
    /// Print the intent a running server holds.
    Get(GetArgs),
    /// Validate an intent file and make it the server's intent.
    Put(PutArgs),
    /// Write a starting intent from what the fleet reports now.
    Suggest(super::suggest::SuggestArgs),
}

/// Validate an intent file without a server.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    coherd intent check intent.yaml\n  \
    coherd intent check intent.yaml --json")]
pub(crate) struct CheckArgs {
    /// The intent YAML (or JSON) file.
    pub file: PathBuf,
    /// Print {"ok", "services", "errors"} as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Print the server's intent.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    coherd intent get\n  \
    coherd intent get --json --server http://10.0.0.5:7070")]
pub(crate) struct GetArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print {"source", "intent"} as JSON instead of the YAML source.
    #[arg(long)]
    pub json: bool,
}

/// Replace the server's intent (needs a token with the `admin` scope).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    coherd intent put intent.yaml\n  \
    COHERD_TOKEN=... coherd intent put intent.yaml --server http://10.0.0.5:7070")]
pub(crate) struct PutArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The intent YAML (or JSON) file.
    pub file: PathBuf,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Check(a) => check(a),
        Command::Get(a) => get(a),
        Command::Put(a) => put(a),
        Command::Suggest(a) => super::suggest::suggest(a),
    }
}

#[derive(Serialize)]
struct CheckReport<'a> {
    ok: bool,
    services: usize,
    errors: &'a [IntentError],
}

fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

/// `FILE:line:column: path: message`, the way compilers point at a place.
fn located(file: &Path, e: &IntentError) -> String {
    let path = if e.path.is_empty() {
        String::new()
    } else {
        format!("{}: ", e.path)
    };
    format!(
        "{}:{}:{}: {path}{}",
        file.display(),
        e.line,
        e.column,
        e.message
    )
}

fn print_errors(file: &Path, errs: &[IntentError]) {
    for e in errs {
        eprintln!("{}", located(file, e));
    }
    eprintln!(
        "{}: {} error{}; the intent is refused whole",
        file.display(),
        errs.len(),
        if errs.len() == 1 { "" } else { "s" }
    );
}

fn services(n: usize) -> String {
    format!("{n} service{}", if n == 1 { "" } else { "s" })
}

fn check(args: CheckArgs) -> Result<ExitCode> {
    let src = read(&args.file)?;
    let result = Intent::from_yaml(&src);
    let (n, errs) = match &result {
        Ok(i) => (i.services.len(), &[][..]),
        Err(e) => (0, &e.0[..]),
    };
    if args.json {
        let report = CheckReport {
            ok: errs.is_empty(),
            services: n,
            errors: errs,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if errs.is_empty() {
        println!("{}: ok: {}", args.file.display(), services(n));
    } else {
        print_errors(&args.file, errs);
    }
    Ok(if errs.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn get(args: GetArgs) -> Result<ExitCode> {
    let client = Client::new(&args.server)?;
    let raw = runtime()?.block_on(client.get_json::<serde_json::Value>("/v1/intent", &[]));
    let raw = match raw {
        Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => bail!(
            "coherd at {} has no intent: every service runs with the defaults (set one with `coherd intent put FILE`)",
            client.base()
        ),
        r => r?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
    } else {
        let src = raw["source"].as_str().unwrap_or_default();
        print!("{src}");
        if !src.ends_with('\n') {
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn put(args: PutArgs) -> Result<ExitCode> {
    let src = read(&args.file)?;
    let n = match Intent::from_yaml(&src) {
        Ok(i) => i.services.len(),
        Err(e) => {
            print_errors(&args.file, &e.0);
            eprintln!("nothing was sent");
            return Ok(ExitCode::from(1));
        }
    };
    let client = Client::new(&args.server)?;
    let req = client
        .request(Method::PUT, client.url("/v1/intent", &[]))
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(src);
    match runtime()?.block_on(client.send(req, ADMIN)) {
        Ok(_) => {
            println!(
                "{}: applied: {} now in force at {}",
                args.file.display(),
                services(n),
                client.base()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Status { status, body, .. })
            if status == StatusCode::UNPROCESSABLE_ENTITY
                && let Some(errs) = server_errors(&body) =>
        {
            eprintln!("coherd refused the intent; the one in force stays:");
            print_errors(&args.file, &errs);
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

/// The `errors` of a 422 answer, as intent errors.
fn server_errors(body: &str) -> Option<Vec<IntentError>> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let errs = v["errors"].as_array()?;
    Some(
        errs.iter()
            .map(|e| IntentError {
                line: e["line"].as_u64().unwrap_or(0) as usize,
                column: e["column"].as_u64().unwrap_or(0) as usize,
                path: e["path"].as_str().unwrap_or_default().to_string(),
                message: e["message"].as_str().unwrap_or("invalid").to_string(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_compiler_messages() {
        let e = IntentError {
            line: 3,
            column: 22,
            path: "services.web.report_interval".into(),
            message: "invalid duration".into(),
        };
        assert_eq!(
            located(Path::new("i.yaml"), &e),
            "i.yaml:3:22: services.web.report_interval: invalid duration"
        );
        let errs = server_errors(
            r#"{"errors":[{"line":2,"column":5,"path":"services","message":"bad"}]}"#,
        )
        .unwrap();
        assert_eq!(errs[0].line, 2);
        assert_eq!(errs[0].path, "services");
    }
}
