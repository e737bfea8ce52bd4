//! What the reliability suites (chaos, HA, lifecycle, bad input) look at: the emulator's
//! whole request log, every state a watch sees a resource in (`crate::watch::history`),
//! and small checks over both (requests per time window, Retry-After gaps), plus
//! Prometheus text parsing and a plain-text table printer.

use std::collections::BTreeMap;
use std::time::Duration;

use pwreset_operator::api::PasswordResetOperation;
use serde_json::Value;

pub use crate::now_ms;
pub use crate::watch::history::{History, Seen, SeenCondition};
use crate::{Emulator, condition};

/// The emulator's whole request log (admin calls are never in it), read page by page.
pub async fn request_log(emulator: &Emulator) -> Vec<Value> {
    emulator.client().request_log().await.unwrap_or_else(|e| panic!("{e:#}"))
}

/// Operation GETs in `log`, optionally only those for one operation id.
pub fn operation_gets<'a>(log: &'a [Value], operation_id: Option<&str>) -> Vec<&'a Value> {
    log.iter()
        .filter(|e| e["kind"] == "operationGet")
        .filter(|e| operation_id.is_none_or(|id| e["operationId"] == id))
        .collect()
}

/// The most entries of sorted `times` (ms) inside any window of `window_ms`, and where
/// that window starts.
pub fn busiest_window(times: &[i64], window_ms: i64) -> (usize, i64) {
    let mut best = (0, 0);
    let mut start = 0;
    for (end, &t) in times.iter().enumerate() {
        while times[start] <= t - window_ms {
            start += 1;
        }
        if end + 1 - start > best.0 {
            best = (end + 1 - start, times[start]);
        }
    }
    best
}

/// `Retry-After` of a logged answer in milliseconds (whole or fractional seconds).
pub fn retry_after_ms(entry: &Value) -> Option<i64> {
    let text = entry["retryAfter"].as_str()?;
    let seconds: f64 = text.trim().parse().ok()?;
    Some((seconds * 1000.0).ceil() as i64)
}

/// One request that came sooner than the Retry-After of the answer before it.
#[derive(Debug, Clone)]
pub struct RetryAfterViolation {
    pub operation_id: String,
    /// Seq of the answer that carried Retry-After, and of the early request.
    pub answered_seq: u64,
    pub early_seq: u64,
    /// When the answer's request arrived.
    pub answered_at_ms: i64,
    /// When the answer left the emulator + Retry-After, and when the next request came.
    pub allowed_at_ms: i64,
    pub came_at_ms: i64,
}

/// Checks, per operation, that after an answer carrying `Retry-After` the next GET of the
/// same operation did not arrive before (answer sent + Retry-After). Answers that took
/// `unseen_after_ms` or longer are skipped: the client had given up on them (timeout)
/// and never saw the header.
pub fn retry_after_violations(log: &[Value], unseen_after_ms: i64) -> (usize, Vec<RetryAfterViolation>) {
    let mut per_op: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in operation_gets(log, None) {
        if let Some(id) = e["operationId"].as_str() {
            per_op.entry(id.to_string()).or_default().push(e);
        }
    }
    let mut checked = 0;
    let mut violations = Vec::new();
    for (id, mut gets) in per_op {
        gets.sort_by_key(|e| e["seq"].as_u64());
        for pair in gets.windows(2) {
            let (answer, next) = (pair[0], pair[1]);
            let Some(wait) = retry_after_ms(answer) else { continue };
            let took = answer["durationMs"].as_i64().unwrap_or(0);
            if took >= unseen_after_ms {
                continue;
            }
            checked += 1;
            let allowed_at = answer["timeMs"].as_i64().unwrap_or(0) + took + wait;
            let came_at = next["timeMs"].as_i64().unwrap_or(0);
            if came_at < allowed_at {
                violations.push(RetryAfterViolation {
                    operation_id: id.clone(),
                    answered_seq: answer["seq"].as_u64().unwrap_or(0),
                    early_seq: next["seq"].as_u64().unwrap_or(0),
                    answered_at_ms: answer["timeMs"].as_i64().unwrap_or(0),
                    allowed_at_ms: allowed_at,
                    came_at_ms: came_at,
                });
            }
        }
    }
    (checked, violations)
}

/// The sum of every sample of a counter family in a Prometheus text body, e.g. all
/// `pwreset_graph_requests_total{...}` lines (0 when the family has no sample).
pub fn metric_sum(body: &str, family: &str) -> f64 {
    samples(body, family).sum::<f64>() + 0.0 // an empty sum is -0.0
}

/// Every sample value of `family` (any labels) in a Prometheus text body.
fn samples<'a>(body: &'a str, family: &'a str) -> impl Iterator<Item = f64> + 'a {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(move |l| l.strip_prefix(family).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
}

/// A plain-text table for test output: `--nocapture` shows it.
#[derive(Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { rows: vec![header.iter().map(|s| s.to_string()).collect()] }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| self.rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (n, row) in self.rows.iter().enumerate() {
            let line: Vec<String> =
                row.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = widths[i])).collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
            if n == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                out.push_str(&rule.join("  "));
                out.push('\n');
            }
        }
        out
    }
}

/// `condition(obj, type_)` as (status, reason), for compact comparisons.
pub fn status_reason(obj: &PasswordResetOperation, type_: &str) -> Option<(String, String)> {
    condition(obj, type_).map(|c| (c.0, c.1))
}

/// Seconds with one decimal, for tables.
pub fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Samples of a counter family summed by the value of one label, e.g. Graph requests by
/// `code` over all tenants.
pub fn metric_by_label(body: &str, family: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let needle = format!("{label}=\"");
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(family).and_then(|r| r.strip_prefix('{')) else { continue };
        let Some((labels, value)) = rest.rsplit_once("} ") else { continue };
        let Some(start) = labels.find(&needle) else { continue };
        let tail = &labels[start + needle.len()..];
        let Some(end) = tail.find('"') else { continue };
        if let Ok(v) = value.trim().parse::<f64>() {
            *out.entry(tail[..end].to_string()).or_default() += v;
        }
    }
    out
}

/// The smallest sample of a gauge family (any labels), if present.
pub fn metric_min(body: &str, family: &str) -> Option<f64> {
    samples(body, family).reduce(f64::min)
}

/// (name, resourceVersion) of every resource `api` lists, sorted by name: equal before and
/// after means nothing was written.
pub async fn resource_versions(api: &kube::Api<PasswordResetOperation>) -> Vec<(String, String)> {
    let list = api.list(&kube::api::ListParams::default()).await.expect("list");
    let mut v: Vec<_> = list
        .items
        .iter()
        .map(|o| (o.metadata.name.clone().unwrap_or_default(), o.metadata.resource_version.clone().unwrap_or_default()))
        .collect();
    v.sort();
    v
}
