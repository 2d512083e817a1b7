//! Reading an intent from a YAML node tree: every field checked, every error
//! kept with its line, column and path.

use super::*;

/// Labels alerts carry already: a breakdown label may not be one of them.
const RESERVED_LABELS: [&str; 9] = [
    "alertname",
    "severity",
    "service",
    "kind",
    "member",
    "deploy",
    "divergence",
    "sli",
    "facet",
];

#[derive(Default)]
pub(super) struct Reader {
    pub(super) errors: Vec<IntentError>,
}

impl Reader {
    fn err(&mut self, node: &Node, path: &str, message: impl Into<String>) {
        self.errors.push(IntentError {
            line: node.line,
            column: node.column,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// The entries of a mapping, checking keys against `allowed` (when given).
    fn map<'a>(
        &mut self,
        node: &'a Node,
        path: &str,
        allowed: Option<&[&str]>,
    ) -> Vec<(&'a str, &'a Node)> {
        let entries = match &node.kind {
            NodeKind::Map(e) => e,
            NodeKind::Null => return Vec::new(),
            _ => {
                self.err(
                    node,
                    path,
                    format!("expected a mapping, found {}", node.shape()),
                );
                return Vec::new();
            }
        };
        let mut out: Vec<(&str, &Node)> = Vec::new();
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (k, v) in entries {
            let Some(key) = k.as_str() else {
                self.err(k, path, format!("keys must be text, found {}", k.shape()));
                continue;
            };
            let here = join(path, key);
            if !seen.insert(key) {
                self.err(k, &here, "duplicate key");
                continue;
            }
            if let Some(allowed) = allowed
                && !allowed.contains(&key)
            {
                self.err(
                    k,
                    &here,
                    format!(
                        "unknown field `{key}`; expected one of: {}",
                        allowed.join(", ")
                    ),
                );
                continue;
            }
            out.push((key, v));
        }
        out
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match node.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.err(node, path, format!("expected text, found {}", node.shape()));
                None
            }
        }
    }

    fn strings(&mut self, node: &Node, path: &str) -> Vec<String> {
        match &node.kind {
            NodeKind::Seq(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| self.string(n, &format!("{path}[{i}]")))
                .collect(),
            NodeKind::Null => Vec::new(),
            _ => {
                self.err(
                    node,
                    path,
                    format!("expected a list, found {}", node.shape()),
                );
                Vec::new()
            }
        }
    }

    fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let s = self.string(node, path)?;
        match parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(node, path, e);
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.kind {
            NodeKind::Scalar { value, plain: true } if value == "true" => Some(true),
            NodeKind::Scalar { value, plain: true } if value == "false" => Some(false),
            _ => {
                self.err(node, path, "expected true or false");
                None
            }
        }
    }

    fn number(&mut self, node: &Node, path: &str, max: u32) -> Option<u32> {
        match node.as_str().and_then(|s| s.parse::<u32>().ok()) {
            Some(n) if n <= max => Some(n),
            _ => {
                self.err(
                    node,
                    path,
                    format!("expected a whole number from 0 to {max}"),
                );
                None
            }
        }
    }

    pub(super) fn intent(&mut self, node: &Node) -> Intent {
        let mut intent = Intent::default();
        let top = self.map(node, "", Some(&["services"]));
        if top.is_empty() && matches!(node.kind, NodeKind::Map(_)) {
            self.err(
                node,
                "services",
                "missing: an intent lists its services; to clear it, write `services: {}`",
            );
        }
        for (key, v) in top {
            debug_assert_eq!(key, "services");
            for (name, svc) in self.map(v, "services", None) {
                let path = join("services", name);
                if let Err(e) = names::service(name) {
                    self.err(key_node(v, name), &path, e);
                }
                let s = self.service(svc, &path);
                intent.services.insert(name.to_string(), s);
            }
        }
        intent
    }

    fn service(&mut self, node: &Node, path: &str) -> ServiceIntent {
        const FIELDS: &[&str] = &[
            "report_interval",
            "expect_members",
            "facets",
            "phases",
            "leases",
            "datasets",
            "dephase",
            "breakdown",
        ];
        let mut s = ServiceIntent::default();
        for (key, v) in self.map(node, path, Some(FIELDS)) {
            let here = join(path, key);
            match key {
                "report_interval" => {
                    if let Some(d) = self.duration(v, &here) {
                        if d.is_zero() {
                            self.err(v, &here, "must be longer than zero");
                        }
                        s.report_interval = d;
                    }
                }
                "expect_members" => s.expect_members = self.number(v, &here, 10_000_000),
                "facets" => {
                    for (name, f) in self.map(v, &here, None) {
                        let fp = join(&here, name);
                        if let Err(e) = names::facet(name) {
                            self.err(key_node(v, name), &fp, e);
                        }
                        let facet = self.facet(f, &fp, name);
                        s.facets.insert(name.to_string(), facet);
                    }
                }
                "phases" => s.phases = self.phases(v, &here),
                "leases" => {
                    for (name, l) in self.map(v, &here, None) {
                        let lp = join(&here, name);
                        if let Err(e) = names::name(name) {
                            self.err(key_node(v, name), &lp, e);
                        }
                        let mut lease = LeaseIntent::default();
                        for (k, x) in self.map(l, &lp, Some(&["exclusive"])) {
                            debug_assert_eq!(k, "exclusive");
                            lease.exclusive = self.boolean(x, &join(&lp, k)).unwrap_or(false);
                        }
                        s.leases.insert(name.to_string(), lease);
                    }
                }
                "datasets" => {
                    for (name, d) in self.map(v, &here, None) {
                        if let Err(e) = names::name(name) {
                            self.err(key_node(v, name), &join(&here, name), e);
                        }
                        let dp = join(&here, name);
                        let mut dataset = DatasetIntent::default();
                        for (k, x) in self.map(d, &dp, Some(&["max_lag"])) {
                            debug_assert_eq!(k, "max_lag");
                            dataset.max_lag = self.max_lag(x, &join(&dp, k));
                        }
                        s.datasets.insert(name.to_string(), dataset);
                    }
                }
                "dephase" => s.dephase = self.dephase(v, &here),
                "breakdown" => {
                    let labels = self.strings(v, &here);
                    for (i, l) in labels.iter().enumerate() {
                        let at = format!("{here}[{i}]");
                        if let Err(e) = names::name(l) {
                            self.err(v, &at, e);
                        } else if RESERVED_LABELS.contains(&l.as_str()) {
                            self.err(v, &at, format!("{l:?} is a label coherd's alerts already carry; break down by another member label"));
                        } else if labels[..i].contains(l) {
                            self.err(v, &at, format!("{l:?} is listed twice"));
                        }
                    }
                    if labels.len() > MAX_BREAKDOWN {
                        self.err(
                            v,
                            &here,
                            format!("at most {MAX_BREAKDOWN} labels: each multiplies the series per service"),
                        );
                    }
                    s.breakdown = labels;
                }
                _ => unreachable!("checked by map()"),
            }
        }
        s
    }

    fn facet(&mut self, node: &Node, path: &str, name: &str) -> FacetIntent {
        let mut f = FacetIntent {
            target: None,
            compatible: Vec::new(),
            uniform: false,
            rollout_window: DEFAULT_ROLLOUT_WINDOW,
            canary: None,
        };
        let mut uniform_node = None;
        for (key, v) in self.map(
            node,
            path,
            Some(&[
                "target",
                "compatible",
                "uniform",
                "rollout_window",
                "canary",
            ]),
        ) {
            let here = join(path, key);
            match key {
                "target" => {
                    f.target = self.string(v, &here);
                    if let Some(t) = &f.target
                        && let Err(e) = names::value(t, 256)
                    {
                        self.err(v, &here, e);
                    }
                }
                "compatible" => f.compatible = self.strings(v, &here),
                "uniform" => {
                    // Only an explicit `false` contradicts a target; a value that
                    // is not a boolean has its own error.
                    if let Some(b) = self.boolean(v, &here) {
                        f.uniform = b;
                        uniform_node = Some((v, here));
                    }
                }
                "rollout_window" => {
                    f.rollout_window = self.duration(v, &here).unwrap_or(DEFAULT_ROLLOUT_WINDOW)
                }
                "canary" => f.canary = Some(self.canary(v, &here)),
                _ => unreachable!("checked by map()"),
            }
        }
        if f.canary.is_some() && f.target.is_none() {
            self.err(
                node,
                &join(path, "canary"),
                "a canary compares each value with the previous target or the target: give the facet a target",
            );
        }
        if let (Some((v, here)), Some(_)) = (&uniform_node, &f.target)
            && !f.uniform
        {
            self.err(
                v,
                here,
                "a facet with a target is uniform; remove `uniform: false`",
            );
        }
        if let Some(t) = &f.target
            && f.compatible.contains(t)
        {
            self.err(
                node,
                &join(path, "compatible"),
                format!("lists the target {t:?}; list only other values"),
            );
        }
        if name == "phase" && (f.target.is_some() || f.uniform) {
            self.err(
                node,
                path,
                "the phase facet follows the phase machine; configure it under `phases`",
            );
        }
        f.uniform |= f.target.is_some();
        f
    }

    fn canary(&mut self, node: &Node, path: &str) -> CanaryIntent {
        let mut c = CanaryIntent::default();
        let fields = Some(&["max_ratio", "min_requests", "window", "alpha", "slow_ms"][..]);
        for (key, v) in self.map(node, path, fields) {
            let here = join(path, key);
            let float = v.as_str().and_then(|s| s.parse::<f64>().ok());
            match key {
                "max_ratio" => match float {
                    Some(r) if (1.0..=1000.0).contains(&r) => c.max_ratio = r,
                    _ => self.err(v, &here, "expected a number from 1 to 1000"),
                },
                "min_requests" => match v.as_str().and_then(|s| s.parse::<u64>().ok()) {
                    Some(n) if (1..=1_000_000_000_000).contains(&n) => c.min_requests = n,
                    _ => self.err(v, &here, "expected a whole number from 1 to 10^12"),
                },
                "window" => match self.duration(v, &here) {
                    Some(d)
                        if (Duration::from_secs(10)..=Duration::from_secs(86_400)).contains(&d) =>
                    {
                        c.window = d
                    }
                    Some(_) => self.err(v, &here, "must be from 10s to 1d"),
                    None => {}
                },
                "alpha" => match float {
                    Some(a) if a > 0.0 && a <= 0.1 => c.alpha = a,
                    _ => self.err(v, &here, "expected a number above 0 and at most 0.1"),
                },
                "slow_ms" => match v.as_str().and_then(|s| s.parse::<u32>().ok()) {
                    Some(ms) if (1..=600_000).contains(&ms) => c.slow_ms = Some(ms),
                    _ => self.err(v, &here, "expected milliseconds from 1 to 600000"),
                },
                _ => unreachable!("checked by map()"),
            }
        }
        c
    }

    fn max_lag(&mut self, node: &Node, path: &str) -> Option<MaxLag> {
        let text = self.string(node, path)?;
        if let Ok(n) = text.parse::<u64>() {
            return Some(MaxLag::Positions(n));
        }
        match parse_duration(&text) {
            Ok(d) if !d.is_zero() => Some(MaxLag::Time(d)),
            _ => {
                self.err(
                    node,
                    path,
                    "expected positions (a whole number, such as 1000) or a time (such as 30s)",
                );
                None
            }
        }
    }

    fn dephase(&mut self, node: &Node, path: &str) -> DephaseIntent {
        let mut d = DephaseIntent::default();
        for (key, v) in self.map(node, path, Some(&["jobs"])) {
            let here = join(path, key);
            for (name, j) in self.map(v, &here, None) {
                let jp = join(&here, name);
                if let Err(e) = names::name(name) {
                    self.err(
                        key_node(v, name),
                        &jp,
                        format!("job names are event kinds: {e}"),
                    );
                }
                if let Some(job) = self.job(j, &jp) {
                    d.jobs.insert(name.to_string(), job);
                }
            }
        }
        d
    }

    fn job(&mut self, node: &Node, path: &str) -> Option<JobIntent> {
        const FIELDS: &[&str] = &[
            "period",
            "window",
            "spread",
            "max_concurrent",
            "herd_threshold",
        ];
        let (mut period, mut window, mut period_given) = (None, None, false);
        let mut job = JobIntent {
            period: Duration::ZERO,
            window: Duration::ZERO,
            spread: SpreadMode::Even,
            max_concurrent: None,
            herd_threshold: DEFAULT_HERD_THRESHOLD,
        };
        for (key, v) in self.map(node, path, Some(FIELDS)) {
            let here = join(path, key);
            match key {
                "period" | "window" => {
                    period_given |= key == "period";
                    let Some(d) = self.duration(v, &here) else {
                        continue;
                    };
                    if d.is_zero() {
                        self.err(v, &here, "must be longer than zero");
                    } else if d > MAX_JOB_PERIOD {
                        self.err(v, &here, "must be at most 366d");
                    } else if key == "period" {
                        period = Some(d);
                    } else {
                        window = Some((d, v, here));
                    }
                }
                "spread" => match self.string(v, &here).as_deref() {
                    Some("even") => job.spread = SpreadMode::Even,
                    Some("stable") => job.spread = SpreadMode::Stable,
                    Some(other) => self.err(
                        v,
                        &here,
                        format!("unknown spread {other:?}; use even or stable"),
                    ),
                    None => {}
                },
                "max_concurrent" => match self.number(v, &here, 10_000_000) {
                    Some(0) => self.err(v, &here, "must be at least 1"),
                    n => job.max_concurrent = n,
                },
                "herd_threshold" => match v.as_str().and_then(|s| s.parse::<f64>().ok()) {
                    Some(t) if t > 0.0 && t <= 1.0 => job.herd_threshold = t,
                    _ => self.err(v, &here, "expected a number above 0 and at most 1"),
                },
                _ => unreachable!("checked by map()"),
            }
        }
        let Some(period) = period else {
            if !period_given && (node_is_map(node) || matches!(node.kind, NodeKind::Null)) {
                self.err(
                    node,
                    &join(path, "period"),
                    "give the period the job runs at, such as 1h",
                );
            }
            return None;
        };
        job.period = period;
        job.window = period;
        if let Some((w, v, here)) = window {
            if w > period {
                self.err(
                    v,
                    &here,
                    format!(
                        "the window {} is longer than the period {}",
                        format_duration(w),
                        format_duration(period)
                    ),
                );
            }
            job.window = w;
        }
        Some(job)
    }

    fn phases(&mut self, node: &Node, path: &str) -> PhaseMachine {
        const FIELDS: &[&str] = &[
            "initial",
            "serving",
            "transitions",
            "agreement_timeout",
            "max_flips_per_hour",
            "hold",
        ];
        let mut m = PhaseMachine::default();
        let mut transitions_given = false;
        for (key, v) in self.map(node, path, Some(FIELDS)) {
            let here = join(path, key);
            match key {
                "initial" => m.initial = self.strings(v, &here),
                "serving" => m.serving = self.strings(v, &here),
                "transitions" => {
                    transitions_given = true;
                    m.transitions = self
                        .map(v, &here, None)
                        .into_iter()
                        .map(|(k, to)| (k.to_string(), self.strings(to, &join(&here, k))))
                        .collect();
                }
                "agreement_timeout" => {
                    m.agreement_timeout = self.duration(v, &here).unwrap_or(m.agreement_timeout)
                }
                "max_flips_per_hour" => {
                    m.max_flips_per_hour = self
                        .number(v, &here, 10_000)
                        .unwrap_or(m.max_flips_per_hour)
                }
                "hold" => m.hold = self.duration(v, &here).unwrap_or(m.hold),
                _ => unreachable!("checked by map()"),
            }
        }
        if node_is_map(node)
            && !transitions_given
            && (m.initial != PhaseMachine::default().initial
                || m.serving != PhaseMachine::default().serving)
        {
            self.err(
                node,
                path,
                "give `transitions` when changing `initial` or `serving`",
            );
        }
        if m.initial.is_empty() {
            self.err(
                node,
                &join(path, "initial"),
                "name at least one initial phase",
            );
        }
        m
    }
}

/// The key node of `key` in a mapping, so that an error about a name points
/// at the name; the mapping itself when not found.
fn key_node<'a>(map: &'a Node, key: &str) -> &'a Node {
    match &map.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .map(|(k, _)| k)
            .find(|k| k.as_str() == Some(key))
            .unwrap_or(map),
        _ => map,
    }
}

fn node_is_map(n: &Node) -> bool {
    matches!(n.kind, NodeKind::Map(_))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}
