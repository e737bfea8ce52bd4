//! Request log and counters, for tests and demos to check what a client
//! actually sent. Entries never contain tokens, secrets or passwords: only
//! the request line and what the emulator understood of it.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

/// Kind of route a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RouteKind {
    OperationGet,
    ResetPassword,
    Token,
    /// `POST /{tenant}/oauth2/v2.0/devicecode`.
    DeviceCode,
    Admin,
    /// Unknown routes and wrong methods.
    Other,
}

/// One logged request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Starts at 1, never reused (not even after `POST /_emulator/reset`).
    pub seq: u64,
    /// Unix milliseconds when the request arrived.
    pub time_ms: i64,
    pub kind: RouteKind,
    pub method: String,
    /// As received (still percent-encoded).
    pub path: String,
    /// Raw query string, `null` when there was none.
    pub query: Option<String>,
    pub status: u16,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<String>,
}

/// Counters by route kind and status code.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub total: u64,
    pub by_kind: BTreeMap<RouteKind, u64>,
    pub by_status: BTreeMap<u16, u64>,
    pub by_kind_and_status: BTreeMap<RouteKind, BTreeMap<u16, u64>>,
}

pub struct RequestLog {
    entries: VecDeque<LogEntry>,
    next_seq: u64,
    capacity: usize,
    stats: Stats,
}

/// Oldest entries are dropped beyond this many.
pub const DEFAULT_CAPACITY: usize = 200_000;

impl RequestLog {
    pub fn new(capacity: usize) -> Self {
        RequestLog { entries: VecDeque::new(), next_seq: 1, capacity: capacity.max(1), stats: Stats::default() }
    }

    /// Counts the request; keeps it in the log unless it is an admin call
    /// (those would drown what the client under test did).
    pub fn record(&mut self, mut entry: LogEntry) {
        let stats = &mut self.stats;
        stats.total += 1;
        *stats.by_kind.entry(entry.kind).or_default() += 1;
        *stats.by_status.entry(entry.status).or_default() += 1;
        *stats.by_kind_and_status.entry(entry.kind).or_default().entry(entry.status).or_default() += 1;
        if entry.kind == RouteKind::Admin {
            return;
        }
        entry.seq = self.next_seq;
        self.next_seq += 1;
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Entries with `seq > since`, at most `limit`; the flag says whether
    /// more are left.
    pub fn since(&self, since: u64, limit: usize) -> (Vec<LogEntry>, bool) {
        // Sequence numbers are contiguous, so the start is computed, not
        // searched.
        let first = self.entries.front().map_or(self.next_seq, |e| e.seq);
        let skip = usize::try_from(since.saturating_add(1).saturating_sub(first))
            .unwrap_or(usize::MAX)
            .min(self.entries.len());
        let available = self.entries.len() - skip;
        let taken = self.entries.range(skip..).take(limit).cloned().collect();
        (taken, available > limit)
    }

    /// Sequence number of the newest entry (0 when none was ever logged).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Forgets entries and counters; sequence numbers keep growing so a
    /// client paging with `since` never sees a number twice.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.stats = Stats::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: RouteKind, status: u16) -> LogEntry {
        LogEntry {
            seq: 0,
            time_ms: 0,
            kind,
            method: "GET".into(),
            path: "/x".into(),
            query: None,
            status,
            duration_ms: 0,
            retry_after: None,
            user_id: None,
            operation_id: None,
            tenant: None,
            client_request_id: None,
            grant_type: None,
        }
    }

    #[test]
    fn since_pages_and_caps() {
        let mut log = RequestLog::new(3);
        for _ in 0..5 {
            log.record(entry(RouteKind::OperationGet, 200));
        }
        let seqs = |v: Vec<LogEntry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(log.since(0, 10).0), vec![3, 4, 5]);
        assert_eq!(seqs(log.since(3, 10).0), vec![4, 5]);
        assert_eq!(log.since(5, 10).0.len(), 0);
        let (page, more) = log.since(0, 2);
        assert_eq!((seqs(page), more), (vec![3, 4], true));
        assert_eq!(log.last_seq(), 5);
    }

    #[test]
    fn admin_is_counted_not_logged() {
        let mut log = RequestLog::new(10);
        log.record(entry(RouteKind::Admin, 200));
        log.record(entry(RouteKind::Token, 400));
        assert_eq!(log.since(0, 10).0.len(), 1);
        assert_eq!(log.stats().total, 2);
        assert_eq!(log.stats().by_status[&400], 1);
        let json = serde_json::to_value(log.stats()).unwrap();
        assert_eq!(json["byKind"]["admin"], 1);
        assert_eq!(json["byKindAndStatus"]["token"]["400"], 1);
    }

    #[test]
    fn clear_keeps_sequence() {
        let mut log = RequestLog::new(10);
        log.record(entry(RouteKind::Other, 404));
        log.clear();
        log.record(entry(RouteKind::Other, 404));
        assert_eq!(log.since(0, 10).0[0].seq, 2);
        assert_eq!(log.stats().total, 1);
    }
}
