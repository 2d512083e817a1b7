//! `coherd reconcile`: the reconcile loop's status, emergency stop and release.

use std::process::ExitCode;

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, Need, ServerArgs, runtime};

const ADMIN: Need = Need {
    scope: "admin",
    action: "control the reconcile loop",
};

/// Watch and steer the reconcile loop: status, pause, resume, release.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// The lease, the pause, each action's rollouts, SLIs and the quarantine.
    #[command(
        after_help = "Examples:\n  coherd reconcile status\n  coherd reconcile status --json"
    )]
    Status {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the server's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Emergency stop: nothing more is dispatched (everywhere, or to one
    /// service); it takes effect before the next dispatch.
    #[command(
        after_help = "Examples:\n  coherd reconcile pause\n  coherd reconcile pause --service checkout"
    )]
    Pause {
        #[command(flatten)]
        server: ServerArgs,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
    },
    /// Lift the pause, and the halts a failed verification left.
    #[command(
        after_help = "Examples:\n  coherd reconcile resume\n  coherd reconcile resume --service checkout"
    )]
    Resume {
        #[command(flatten)]
        server: ServerArgs,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
    },
    /// End a subject's quarantine (it kept reopening after repairs).
    #[command(after_help = "Example:\n  coherd reconcile release drift:checkout:c-7:config")]
    Release {
        #[command(flatten)]
        server: ServerArgs,
        /// The divergence id (see `coherd reconcile status`).
        divergence_id: String,
    },
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let rt = runtime()?;
    let post = |server: &ServerArgs, path: &str, body: Value| -> Result<Value> {
        let client = Client::new(server)?;
        let req = client
            .request(Method::POST, client.url(path, &[]))
            .json(&body);
        let (_, text) = rt.block_on(client.send(req, ADMIN))?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    match args.command {
        Command::Status { server, json } => {
            let client = Client::new(&server)?;
            let status: Value = rt.block_on(client.get_json("/v1/reconcile", &[]))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
        }
        Command::Pause { server, service } => {
            post(&server, "/v1/reconcile/pause", json!({"service": service}))?;
            match service {
                Some(s) => println!("reconcile paused for {s}: nothing more is dispatched there"),
                None => println!(
                    "reconcile paused: nothing more is dispatched; `coherd reconcile resume` lifts it"
                ),
            }
        }
        Command::Resume { server, service } => {
            let v = post(&server, "/v1/reconcile/resume", json!({"service": service}))?;
            let lifted = v["decisions"]
                .as_array()
                .map_or(0, |d| d.len().saturating_sub(1));
            println!(
                "reconcile resumed{}; {lifted} halted rollout(s) lifted",
                service.map(|s| format!(" for {s}")).unwrap_or_default()
            );
        }
        Command::Release {
            server,
            divergence_id,
        } => {
            post(
                &server,
                "/v1/reconcile/release",
                json!({"divergence_id": divergence_id}),
            )?;
            println!("{divergence_id} released from quarantine");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &Value) {
    if s["running"] != true {
        println!("reconcile loop: not running here");
        if let Some(l) = s["lease"].as_object() {
            println!(
                "  lease held by {} (epoch {})",
                l["holder"].as_str().unwrap_or("?"),
                l["epoch"]
            );
        }
        return;
    }
    let paused = if s["paused"] == true {
        "PAUSED"
    } else {
        "running"
    };
    println!(
        "reconcile loop: {paused}, fencing epoch {}, {} in flight",
        s["fencing_epoch"], s["in_flight"]
    );
    if let Some(p) = s["paused_services"].as_array().filter(|p| !p.is_empty()) {
        let names: Vec<&str> = p.iter().filter_map(Value::as_str).collect();
        println!("  paused services: {}", names.join(", "));
    }
    println!(
        "\n{:<20} {:<16} {:>6} {:>8} {:>8} {:>9} {:>8}  HALTED",
        "ACTION", "SERVICE", "WAVE", "WAITING", "PLANNED", "IN_FLIGHT", "VERIFY"
    );
    for a in s["actions"].as_array().into_iter().flatten() {
        let name = super::output::short(a["name"].as_str().unwrap_or(""), 20);
        let services = a["services"].as_array().cloned().unwrap_or_default();
        if services.is_empty() {
            println!("{name:<20} {:<16}", "-");
        }
        for r in services {
            let wave = match r["wave"].as_u64() {
                Some(w) => format!("{w}/{}", r["waves"]),
                None => "-".into(),
            };
            let halted = r["halted"]["reason"]
                .as_str()
                .map(|h| super::output::short(h, 60))
                .unwrap_or_default();
            println!(
                "{name:<20} {:<16} {wave:>6} {:>8} {:>8} {:>9} {:>8}  {halted}",
                super::output::short(r["service"].as_str().unwrap_or(""), 16),
                r["waiting"],
                r["planned"],
                r["in_flight"],
                r["awaiting_verification"]
            );
        }
    }
    println!(
        "\n{:<20} {:>10} {:>9} {:>12} {:>10}",
        "ACTION", "DISPATCHED", "VERIFIED", "SUCCESS_RATE", "MEAN_TTR"
    );
    for a in s["actions"].as_array().into_iter().flatten() {
        let st = &a["stats"];
        let rate = a["sli"]["success_rate"]
            .as_f64()
            .map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
        let ttr = a["sli"]["mean_time_to_repair_seconds"]
            .as_f64()
            .map_or("-".into(), |t| format!("{t:.0}s"));
        println!(
            "{:<20} {:>10} {:>9} {rate:>12} {ttr:>10}",
            super::output::short(a["name"].as_str().unwrap_or(""), 20),
            st["dispatched"],
            st["verified"]
        );
    }
    let q = s["quarantined"].as_array().cloned().unwrap_or_default();
    if !q.is_empty() {
        println!("\nQUARANTINED (release with `coherd reconcile release ID`)");
        for e in q {
            println!(
                "  {}  since {}  ({} reopens)",
                e["divergence_id"].as_str().unwrap_or(""),
                e["since"].as_str().unwrap_or(""),
                e["reopens"]
            );
        }
    }
}
