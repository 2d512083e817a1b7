//! `coherd dashboards export`: Grafana dashboards over coherd's metrics.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use coherd_export::dashboards::{DashboardOptions, grafana_dashboards};

/// Dashboards for other tools, over coherd's metrics.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Write the executive, on-call and debug dashboards.
    Export(Export),
}

/// The dashboard formats coherd writes.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// Grafana JSON models, one file per dashboard.
    Grafana,
}

/// Write the executive, on-call and debug dashboards.
#[derive(clap::Args)]
#[command(after_help = "\
Example:
  coherd dashboards export --format grafana --output /var/lib/grafana/dashboards/coherd

Writes coherd-executive.json, coherd-on-call.json and coherd-debug.json into
the directory (created if missing). They read a Prometheus data source chosen
in the dashboard and the recording rules of `coherd rules export`.")]
struct Export {
    /// Output format.
    #[arg(long, value_enum, default_value = "grafana")]
    format: Format,
    /// The directory to write into; without it the three models are printed as one JSON array.
    #[arg(long, short, value_name = "DIR")]
    output: Option<PathBuf>,
    /// The coherence objective drawn as a threshold.
    #[arg(long, default_value_t = 0.999, value_name = "RATIO")]
    slo: f64,
}

/// Runs `coherd dashboards`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Command::Export(e) = args.command;
    let Format::Grafana = e.format;
    if !(e.slo > 0.0 && e.slo < 1.0) {
        bail!(
            "the SLO objective must be strictly between 0 and 1 (e.g. 0.999), got {}",
            e.slo
        );
    }
    let boards = grafana_dashboards(&DashboardOptions { slo: e.slo });
    match &e.output {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
            for (stem, model) in &boards {
                let path = dir.join(format!("{stem}.json"));
                let text = serde_json::to_string_pretty(model)? + "\n";
                std::fs::write(&path, text)
                    .with_context(|| format!("could not write {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
        None => {
            let all: Vec<&serde_json::Value> = boards.iter().map(|(_, m)| m).collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
