//! `coherd status`: how coherent each service is, from a running server.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Result, bail};
use futures_util::{StreamExt, stream};
use serde::Serialize;

use super::divergences;
use super::output::{pct, short};
use crate::client::{
    Client, ClientError, DivergenceRecord, FacetDistribution, ServerArgs, ServiceDetail,
    ServiceSummary, runtime,
};

/// Show members, coherence, mixed facets and open divergences per service.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    coherd status\n  \
    coherd status --service checkout\n  \
    coherd status --json --server http://10.0.0.5:7070")]
pub(crate) struct Args {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Only this service, with its facet distributions, SLIs and open divergences.
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// Print JSON: {"services": [...]}.
    #[arg(long)]
    pub json: bool,
}

/// Open divergences of a service by severity.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(crate) struct BySeverity {
    /// Critical.
    pub critical: u64,
    /// Warning.
    pub warning: u64,
    /// Info.
    pub info: u64,
}

/// One service's status.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    /// The service.
    pub service: String,
    /// Known members.
    pub members: u64,
    /// Live members.
    pub live: u64,
    /// Coherence in [0, 1]; null with no known members.
    pub coherence: Option<f64>,
    /// Facets with more than one value among live members, with their number of values.
    pub mixed_facets: BTreeMap<String, usize>,
    /// Open divergences by severity.
    pub open_divergences: BySeverity,
    /// Facet distributions (with `--service`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facets: Option<BTreeMap<String, FacetDistribution>>,
    /// SLIs (with `--service`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slis: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize)]
struct Status {
    services: Vec<Row>,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    if let Some(s) = &args.service
        && let Err(e) = coherd_model::names::service(s)
    {
        bail!("--service {s:?}: {e}");
    }
    let client = Client::new(&args.server)?;
    let rt = runtime()?;
    let (rows, open) = match &args.service {
        Some(s) => rt.block_on(one(&client, s))?,
        None => rt.block_on(all(&client))?,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Status { services: rows })?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "coherd at {} knows no services yet; members appear when they report (see `coherd report --help`)",
            client.base()
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_rows(&rows);
    if let Some(row) = rows.first().filter(|_| args.service.is_some()) {
        print_detail(row);
        println!();
        if open.is_empty() {
            println!("no open divergences");
        } else {
            divergences::print_table(&open, jiff::Timestamp::now());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn open_divergences(
    client: &Client,
    service: &str,
) -> Result<Vec<DivergenceRecord>, ClientError> {
    client
        .get_all(
            "/v1/divergences",
            &[("service", service), ("state", "open")],
        )
        .await
}

async fn detail(client: &Client, service: &str) -> Result<ServiceDetail> {
    let path = format!("/v1/services/{service}");
    match client.get_json(&path, &[]).await {
        Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => bail!(
            "coherd at {} knows no service {service:?}; `coherd status` lists the ones it knows",
            client.base()
        ),
        r => Ok(r?),
    }
}

async fn one(client: &Client, service: &str) -> Result<(Vec<Row>, Vec<DivergenceRecord>)> {
    let d = detail(client, service).await?;
    let open = open_divergences(client, service).await?;
    let mut row = row(
        ServiceSummary {
            service: d.service.clone(),
            members: d.members,
            live: d.live,
            coherence: d.coherence,
            open_divergences: 0,
        },
        &d.facets,
        &open,
    );
    row.facets = Some(d.facets);
    row.slis = Some(d.slis);
    Ok((vec![row], open))
}

async fn all(client: &Client) -> Result<(Vec<Row>, Vec<DivergenceRecord>)> {
    let services: Vec<ServiceSummary> = client.get_json("/v1/services", &[]).await?;
    let open = open_divergences(client, "").await?;
    let details: Vec<Result<ServiceDetail>> = stream::iter(&services)
        .map(|s| detail(client, &s.service))
        .buffered(8)
        .collect()
        .await;
    let mut rows = Vec::with_capacity(services.len());
    for (s, d) in services.into_iter().zip(details) {
        let facets = d.map(|d| d.facets)?;
        rows.push(row(s, &facets, &open));
    }
    Ok((rows, open))
}

fn row(
    s: ServiceSummary,
    facets: &BTreeMap<String, FacetDistribution>,
    open: &[DivergenceRecord],
) -> Row {
    let mut by = BySeverity::default();
    for d in open.iter().filter(|d| d.service == s.service) {
        match d.severity.as_str() {
            "critical" => by.critical += 1,
            "warning" => by.warning += 1,
            _ => by.info += 1,
        }
    }
    Row {
        mixed_facets: facets
            .iter()
            .filter(|(_, f)| f.values.len() > 1)
            .map(|(k, f)| (k.clone(), f.values.len()))
            .collect(),
        service: s.service,
        members: s.members,
        live: s.live,
        coherence: s.coherence,
        open_divergences: by,
        facets: None,
        slis: None,
    }
}

fn print_rows(rows: &[Row]) {
    println!(
        "{:<22} {:>7} {:>6} {:>9} {:>4} {:>4} {:>4}  MIXED FACETS",
        "SERVICE", "MEMBERS", "LIVE", "COHERENCE", "CRIT", "WARN", "INFO"
    );
    for r in rows {
        println!(
            "{:<22} {:>7} {:>6} {:>9} {:>4} {:>4} {:>4}  {}",
            short(&r.service, 22),
            r.members,
            r.live,
            pct(r.coherence),
            r.open_divergences.critical,
            r.open_divergences.warning,
            r.open_divergences.info,
            short(&mixed(r), 34)
        );
    }
}

/// `version(2), config(3)`: each mixed facet with its number of values.
fn mixed(r: &Row) -> String {
    if r.mixed_facets.is_empty() {
        return "-".into();
    }
    r.mixed_facets
        .iter()
        .map(|(k, n)| format!("{k}({n})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Facet distributions and SLIs of one service.
fn print_detail(r: &Row) {
    if let Some(facets) = &r.facets {
        for (name, dist) in facets {
            let total: u64 = dist.values.values().sum();
            println!();
            match &dist.target {
                Some(t) => println!("facet {name} (target {})", short(t, 60)),
                None => println!("facet {name}"),
            }
            let mut values: Vec<(&String, &u64)> = dist.values.iter().collect();
            values.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (value, n) in values.iter().take(10) {
                let share = (total > 0).then(|| **n as f64 / total as f64);
                let mark = if dist.target.as_ref() == Some(value) {
                    "  target"
                } else {
                    ""
                };
                println!(
                    "  {:<48} {:>8} {:>7}{mark}",
                    short(value, 48),
                    n,
                    pct(share)
                );
            }
            if values.len() > 10 {
                println!("  … and {} more values", values.len() - 10);
            }
        }
    }
    if let Some(slis) = r.slis.as_ref().filter(|s| !s.is_empty()) {
        println!();
        println!("SLIs");
        let mut flat = Vec::new();
        for (k, v) in slis {
            flatten(k, v, &mut flat);
        }
        for (k, v) in flat {
            println!("  {:<40} {v}", short(&k, 40));
        }
    }
}

/// Nested SLI objects as dotted keys with printable values.
fn flatten(key: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                flatten(&format!("{key}.{k}"), v, out);
            }
        }
        serde_json::Value::Null => out.push((key.into(), "-".into())),
        serde_json::Value::Number(n) => {
            let text = match n.as_f64() {
                Some(f) if n.is_f64() => format!("{f:.4}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string(),
                _ => n.to_string(),
            };
            out.push((key.into(), text));
        }
        serde_json::Value::String(s) => out.push((key.into(), s.clone())),
        other => out.push((key.into(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_facets_and_severities_come_from_the_answers() {
        let facets: BTreeMap<String, FacetDistribution> = serde_json::from_str(
            r#"{"version":{"target":"2","values":{"1":3,"2":97}},"config":{"target":null,"values":{"a":100}}}"#,
        )
        .unwrap();
        let open: Vec<DivergenceRecord> = serde_json::from_str(
            r#"[{"service":"web","kind":"mixed","severity":"warning","opened_at":"2026-11-22T08:00:00Z"},
                {"service":"web","kind":"drift","severity":"critical","opened_at":"2026-11-22T08:00:00Z"},
                {"service":"db","kind":"silent","severity":"warning","opened_at":"2026-11-22T08:00:00Z"}]"#,
        )
        .unwrap();
        let s = ServiceSummary {
            service: "web".into(),
            members: 100,
            live: 100,
            coherence: Some(0.97),
            open_divergences: 2,
        };
        let r = row(s, &facets, &open);
        assert_eq!(r.mixed_facets, BTreeMap::from([("version".to_string(), 2)]));
        assert_eq!(
            (r.open_divergences.critical, r.open_divergences.warning),
            (1, 1)
        );
        assert_eq!(mixed(&r), "version(2)");
    }

    #[test]
    fn slis_flatten_to_dotted_keys() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"exposure":{"version":0.25},"coherence":null,"n":3}"#)
                .unwrap();
        let mut out = Vec::new();
        for (k, v) in v.as_object().unwrap() {
            flatten(k, v, &mut out);
        }
        out.sort();
        assert_eq!(
            out,
            vec![
                ("coherence".to_string(), "-".to_string()),
                ("exposure.version".to_string(), "0.25".to_string()),
                ("n".to_string(), "3".to_string()),
            ]
        );
    }
}
