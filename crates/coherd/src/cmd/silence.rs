//! `coherd silence`: add, list and expire silences on a running server.

use std::process::ExitCode;

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, Need, ServerArgs, runtime};

const ADMIN: Need = Need {
    scope: "admin",
    action: "manage silences",
};

/// Hold alerts back: matchers, a duration and a comment.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do with silences.
#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Add a silence.
    #[command(
        after_help = "Examples:\n  coherd silence add kind=drift service=checkout --duration 2h --comment \"rollout in progress\"\n  \
        coherd silence add 'alertname=~CoherdDrift|CoherdMixedState' --duration 30m"
    )]
    Add {
        #[command(flatten)]
        server: ServerArgs,
        /// Label matchers: name=value, name!=value, name=~regex, name!~regex.
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long it lasts.
        #[arg(long, default_value = "1h")]
        duration: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
        /// Who (default: $USER).
        #[arg(long, env = "USER", hide_env_values = true, default_value = "")]
        created_by: String,
    },
    /// List silences.
    #[command(after_help = "Example:\n  coherd silence list --json")]
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the server's JSON.
        #[arg(long)]
        json: bool,
    },
    /// End a silence now.
    #[command(after_help = "Example:\n  coherd silence expire s-1795334400000000000-1")]
    Expire {
        #[command(flatten)]
        server: ServerArgs,
        /// The silence id (see `coherd silence list`).
        id: String,
    },
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let rt = runtime()?;
    match args.command {
        Command::Add {
            server,
            matchers,
            duration,
            comment,
            created_by,
        } => {
            let client = Client::new(&server)?;
            let body = json!({"matchers": matchers, "duration": duration, "comment": comment, "created_by": created_by});
            let req = client
                .request(Method::POST, client.url("/v1/silences", &[]))
                .json(&body);
            let (_, text) = rt.block_on(client.send(req, ADMIN))?;
            let v: Value = serde_json::from_str(&text).unwrap_or_default();
            println!("silence {} added", v["id"].as_str().unwrap_or("?"));
        }
        Command::List { server, json } => {
            let client = Client::new(&server)?;
            let list: Value = rt.block_on(client.get_json("/v1/silences", &[]))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<28} {:<8} {:<21} {:<36} COMMENT",
                    "ID", "STATE", "ENDS", "MATCHERS"
                );
                for s in list.as_array().into_iter().flatten() {
                    let matchers: Vec<&str> = s["matchers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    println!(
                        "{:<28} {:<8} {:<21} {:<36} {}",
                        s["id"].as_str().unwrap_or(""),
                        s["state"].as_str().unwrap_or(""),
                        ends(s["ends_at"].as_str().unwrap_or("")),
                        super::output::short(&matchers.join(" "), 36),
                        s["comment"].as_str().unwrap_or("")
                    );
                }
            }
        }
        Command::Expire { server, id } => {
            let client = Client::new(&server)?;
            let req = client.request(
                Method::DELETE,
                client.url(&format!("/v1/silences/{id}"), &[]),
            );
            rt.block_on(client.send(req, ADMIN))?;
            println!("silence {id} expired");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An end time to the second, in UTC, whole (the API gives nanoseconds).
fn ends(at: &str) -> String {
    match at.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
        Err(_) => at.to_string(),
    }
}
