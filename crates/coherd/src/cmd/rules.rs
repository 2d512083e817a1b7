//! `coherd rules export`: Prometheus rules over coherd's own metrics.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use coherd_export::rules::{RuleOptions, prometheus_rules, to_yaml};

/// Rules for other tools, built from coherd's metrics.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Write recording and alerting rules for Prometheus.
    Export(Export),
}

/// The rule formats coherd writes.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// A Prometheus rule file (YAML).
    Prometheus,
}

/// Write recording and alerting rules for Prometheus.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  coherd rules export --format prometheus --output /etc/prometheus/rules/coherd.yml
  coherd rules export --config /etc/coherd/coherd.yaml --output coherd.yml
  promtool check rules /etc/prometheus/rules/coherd.yml

The rules record the coherence error ratio and burn rate over 5m, 30m, 1h, 6h
and 3d and the error budget left over the SLO period; they page when the budget
burns 14.4x too fast over 1h and 5m or 6x over 6h and 30m, open a ticket at 1x
over 3d and 6h (or as the config's SLO says), and alert on open divergences of
every kind and on the SLI thresholds.")]
struct Export {
    /// Output format.
    #[arg(long, value_enum, default_value = "prometheus")]
    format: Format,
    /// Write here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The coherence objective: the share of member-time coherent.
    #[arg(long, default_value_t = 0.999, value_name = "RATIO")]
    slo: f64,
    /// The SLO period in days.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    period_days: u32,
    /// Extra label matchers for coherd's series, e.g. 'job="coherd"'.
    #[arg(long, default_value = "", value_name = "MATCHERS")]
    selector: String,
    /// A base URL for runbooks; each alert links to BASE#<alert name in lower case>.
    #[arg(long, value_name = "URL")]
    runbook_url: Option<String>,
    /// Take the objective, period and burn windows from the SLO in this
    /// `coherd serve` config (`alerting.slos`), so that Prometheus and coherd
    /// page alike.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["slo", "period_days"])]
    config: Option<PathBuf>,
}

/// Runs `coherd rules`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Command::Export(e) = args.command;
    let Format::Prometheus = e.format;
    let mut opts = RuleOptions {
        slo: e.slo,
        period_days: e.period_days,
        selector: e.selector,
        runbook_url: e.runbook_url,
        ..RuleOptions::default()
    };
    if let Some(path) = &e.config {
        let config = coherd_server::ServerConfig::from_file(path)?;
        let slos = &config.alerting.slos;
        let Some(slo) = slos.first() else {
            anyhow::bail!(
                "{} has no `alerting.slos`: give --slo and --period-days instead",
                path.display()
            );
        };
        let same = |s: &coherd_alert::config::Slo| {
            s.service == slo.service
                && s.objective == slo.objective
                && s.period == slo.period
                && s.windows == slo.windows
        };
        if !slos.iter().all(same) {
            anyhow::bail!(
                "the SLOs in {} differ in service, objective, period or windows; the exported rules hold one: export with --slo and --period-days",
                path.display()
            );
        }
        coherd_alert::slo::check_windows(&slo.windows)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        opts.slo = slo.objective;
        opts.period_days = (slo.period.as_secs() / 86_400) as u32;
        opts.windows = slo.windows.clone();
        if slo.service != "*" {
            // The SLO is one service's: so are the exported rules.
            let own = format!("service=\"{}\"", slo.service);
            opts.selector = [opts.selector.trim(), own.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
        }
    }
    let groups = prometheus_rules(&opts)?;
    let text = to_yaml(&groups);
    match &e.output {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("could not create the folder {}", dir.display()))?;
            }
            std::fs::write(path, text)
                .with_context(|| format!("could not write {}", path.display()))?;
            let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
            eprintln!(
                "wrote {} rules in {} groups to {}",
                rules,
                groups.len(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
