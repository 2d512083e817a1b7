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
        coherd silence add 'alertname=~CoherdDrift|CoherdMixedState' --duration 30m\n  \
        coherd silence add service=db --starts-at 2026-12-05T22:00:00Z --ends-at 2026-12-06T02:00:00Z --comment \"maintenance window\""
    )]
    Add {
        #[command(flatten)]
        server: ServerArgs,
        /// Label matchers: name=value, name!=value, name=~regex, name!~regex.
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long it lasts (default 1h).
        #[arg(long, conflicts_with = "ends_at")]
        duration: Option<String>,
        /// When it starts, RFC 3339 (default: now); a maintenance window ahead
        /// is listed as pending until then.
        #[arg(long, value_name = "TIME")]
        starts_at: Option<coherd_model::Time>,
        /// When it ends, RFC 3339 (instead of --duration).
        #[arg(long, value_name = "TIME")]
        ends_at: Option<coherd_model::Time>,
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
            starts_at,
            ends_at,
            comment,
            created_by,
        } => {
            let client = Client::new(&server)?;
            let mut body =
                json!({"matchers": matchers, "comment": comment, "created_by": created_by});
            match ends_at {
                Some(t) => body["ends_at"] = json!(t),
                None => body["duration"] = json!(duration.as_deref().unwrap_or("1h")),
            }
            if let Some(t) = starts_at {
                body["starts_at"] = json!(t);
            }
            let req = client
                .request(Method::POST, client.url("/v1/silences", &[]))
                .json(&body);
            let (_, text) = rt.block_on(client.send(req, ADMIN))?;
            let v: Value = serde_json::from_str(&text).unwrap_or_default();
            let id = v["id"].as_str().unwrap_or("?");
            match starts_at {
                Some(t) => println!("silence {id} added, from {t}"),
                None => println!("silence {id} added"),
            }
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
