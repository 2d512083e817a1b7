//! The standard `process_*` metrics, read from `/proc/self` at scrape time.
//!
//! On a system without `/proc` the metrics are left out rather than reported as zero.

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// Clock ticks per second for `/proc/self/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc/self` says about this process.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Process {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub threads: Option<u64>,
}

impl Process {
    /// Reads the current process.
    pub(super) fn read() -> Process {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let boot = std::fs::read_to_string("/proc/stat").ok();
        let limits = std::fs::read_to_string("/proc/self/limits").ok();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        let mut p = stat
            .as_deref()
            .map(|s| parse_stat(s, boot.as_deref().and_then(boot_time)))
            .unwrap_or_default();
        p.resident_bytes = status.as_deref().and_then(resident_bytes);
        p.open_fds = open_fds;
        p.max_fds = limits.as_deref().and_then(max_open_files);
        p
    }
}

/// Fields of `/proc/self/stat` after the command name (which may hold spaces).
fn parse_stat(stat: &str, boot_time: Option<u64>) -> Process {
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return Process::default();
    };
    // `rest` starts at field 3 (state); field n is at index n - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let cpu = match (num(14), num(15)) {
        (Some(u), Some(s)) => Some((u + s) as f64 / TICKS_PER_SECOND),
        _ => None,
    };
    let start = match (num(22), boot_time) {
        (Some(ticks), Some(boot)) => Some(boot as f64 + ticks as f64 / TICKS_PER_SECOND),
        _ => None,
    };
    Process {
        cpu_seconds: cpu,
        threads: num(20),
        virtual_bytes: num(23),
        resident_bytes: None,
        start_time_seconds: start,
        open_fds: None,
        max_fds: None,
    }
}

/// `VmRSS` from `/proc/self/status`, in bytes (the page size need not be known).
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// `btime` from `/proc/stat`: boot time in seconds since the epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit on open files from `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Registers the process metrics (unprefixed, as every Prometheus client names them).
pub(super) fn register(r: &mut Registry) {
    let p = Process::read();
    if let Some(v) = p.cpu_seconds {
        r.register_with_unit(
            "process_cpu",
            "Total user and system CPU time spent",
            Unit::Seconds,
            ConstCounter::<f64>::new(v),
        );
    }
    let gauge = |r: &mut Registry, name: &str, help: &str, unit: Option<Unit>, v: Option<u64>| {
        if let Some(v) = v {
            let g = ConstGauge::<i64>::new(v as i64);
            match unit {
                Some(u) => r.register_with_unit(name, help, u, g),
                None => r.register(name, help, g),
            }
        }
    };
    gauge(
        r,
        "process_resident_memory",
        "Resident memory size",
        Some(Unit::Bytes),
        p.resident_bytes,
    );
    gauge(
        r,
        "process_virtual_memory",
        "Virtual memory size",
        Some(Unit::Bytes),
        p.virtual_bytes,
    );
    gauge(
        r,
        "process_open_fds",
        "Open file descriptors",
        None,
        p.open_fds,
    );
    gauge(
        r,
        "process_max_fds",
        "Limit on open file descriptors",
        None,
        p.max_fds,
    );
    gauge(r, "process_threads", "OS threads", None, p.threads);
    if let Some(v) = p.start_time_seconds {
        r.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Unit::Seconds,
            ConstGauge::<f64>::new(v),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_command_name_with_spaces() {
        let stat = "4242 (coherd (a b)) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 7 0 1000 123456789 2560 18446744073709551615";
        let p = parse_stat(stat, Some(1_700_000_000));
        assert_eq!(p.cpu_seconds, Some(3.0));
        assert_eq!(p.threads, Some(7));
        assert_eq!(p.virtual_bytes, Some(123456789));
        assert_eq!(
            resident_bytes("Name:\tcoherd\nVmRSS:\t   2560 kB\n"),
            Some(2560 * 1024)
        );
        assert_eq!(p.start_time_seconds, Some(1_700_000_010.0));
    }

    #[test]
    fn limits_and_boot_time() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_reads() {
        let p = Process::read();
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(p.resident_bytes.unwrap_or(0) > 0);
            assert!(p.open_fds.unwrap_or(0) > 0);
            assert!(p.start_time_seconds.unwrap_or(0.0) > 1.0e9);
        }
    }
}
