//! The byte layout of a cached resource's spec and status: every string length-prefixed,
//! every integer a LEB128 varint, absent values a single 0 byte. Only this process reads it
//! (it is never stored or sent), so there is no version field: a new field is a compile
//! error in `pack` and `unpack` below (the structs are destructured without `..`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::{PasswordResetOperationSpec as Spec, PasswordResetOperationStatus as Status, SecretReference};

/// Status comes first, and in it Graph's state and the conditions: the gauges read only
/// those (`state_and_ready_reason`), without knowing the rest of the layout.
pub(super) fn pack(spec: &Spec, status: Option<&Status>) -> Box<[u8]> {
    let mut w = Writer(Vec::with_capacity(256));
    match status {
        None => w.uint(0),
        Some(status) => {
            w.uint(1);
            pack_status(&mut w, status);
        }
    }
    pack_spec(&mut w, spec);
    w.0.into_boxed_slice()
}

fn pack_spec(w: &mut Writer, spec: &Spec) {
    let Spec {
        user_id,
        operation_id,
        location,
        credentials_secret_ref,
        poll_interval,
        active_deadline_seconds,
        ttl_seconds_after_finished,
    } = spec;
    w.opt_str(user_id.as_deref());
    w.opt_str(operation_id.as_deref());
    w.opt_str(location.as_deref());
    w.opt_str(credentials_secret_ref.as_ref().map(|r| r.name.as_str()));
    w.opt_str(poll_interval.as_deref());
    w.opt_int(*active_deadline_seconds);
    w.opt_int(ttl_seconds_after_finished.map(i64::from));
}

fn pack_status(w: &mut Writer, status: &Status) {
    let Status {
        status,
        operation_id,
        user_id,
        created_date_time,
        last_action_date_time,
        resource_location,
        status_detail,
        observed_generation,
        last_polled_time,
        completion_time,
        not_found_since,
        request_id,
        client_request_id,
        last_handled_reconcile_at,
        conditions,
    } = status;
    w.opt_str(status.as_deref());
    w.uint(conditions.len() as u64);
    for condition in conditions {
        let Condition { last_transition_time, message, observed_generation, reason, status, type_ } = condition;
        w.str(type_);
        w.str(status);
        w.str(reason);
        w.str(message);
        w.opt_int(*observed_generation);
        w.time(last_transition_time);
    }
    for s in [
        operation_id,
        user_id,
        created_date_time,
        last_action_date_time,
        resource_location,
        status_detail,
        request_id,
        client_request_id,
        last_handled_reconcile_at,
    ] {
        w.opt_str(s.as_deref());
    }
    w.opt_int(*observed_generation);
    for t in [last_polled_time, completion_time, not_found_since] {
        w.opt_time(t.as_ref());
    }
}

pub(super) fn unpack(bytes: &[u8]) -> (Spec, Option<Status>) {
    let mut r = Reader(bytes);
    let status = (r.uint() != 0).then(|| unpack_status(&mut r));
    let spec = Spec {
        user_id: r.opt_string(),
        operation_id: r.opt_string(),
        location: r.opt_string(),
        credentials_secret_ref: r.opt_string().map(|name| SecretReference { name }),
        poll_interval: r.opt_string(),
        active_deadline_seconds: r.opt_int(),
        ttl_seconds_after_finished: r.opt_int().map(|v| v as i32),
    };
    debug_assert!(r.0.is_empty(), "the whole packed resource is read");
    (spec, status)
}

fn unpack_status(r: &mut Reader<'_>) -> Status {
    let state = r.opt_string();
    let conditions = (0..r.uint())
        .map(|_| Condition {
            type_: r.string(),
            status: r.string(),
            reason: r.string(),
            message: r.string(),
            observed_generation: r.opt_int(),
            last_transition_time: r.time(),
        })
        .collect();
    Status {
        status: state,
        conditions,
        operation_id: r.opt_string(),
        user_id: r.opt_string(),
        created_date_time: r.opt_string(),
        last_action_date_time: r.opt_string(),
        resource_location: r.opt_string(),
        status_detail: r.opt_string(),
        request_id: r.opt_string(),
        client_request_id: r.opt_string(),
        last_handled_reconcile_at: r.opt_string(),
        observed_generation: r.opt_int(),
        last_polled_time: r.opt_time(),
        completion_time: r.opt_time(),
        not_found_since: r.opt_time(),
    }
}

/// Graph's `status` and the Ready condition's reason, read in place (no allocation): what
/// the gauges need of every cached resource at each scrape.
pub(super) fn state_and_ready_reason(bytes: &[u8]) -> (Option<&str>, Option<&str>) {
    let mut r = Reader(bytes);
    if r.uint() == 0 {
        return (None, None);
    }
    let state = r.opt_str();
    let mut ready = None;
    for _ in 0..r.uint() {
        let (type_, _status, reason, _message) = (r.str(), r.str(), r.str(), r.str());
        r.opt_int();
        r.time();
        if type_ == crate::conditions::READY {
            ready = Some(reason);
        }
    }
    (state, ready)
}

struct Writer(Vec<u8>);

impl Writer {
    fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    /// Zigzag, so small negative numbers stay short.
    fn int(&mut self, v: i64) {
        self.uint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn str(&mut self, s: &str) {
        self.uint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.uint(0),
            Some(s) => {
                self.uint(s.len() as u64 + 1);
                self.0.extend_from_slice(s.as_bytes());
            }
        }
    }

    fn opt_int(&mut self, v: Option<i64>) {
        match v {
            None => self.uint(0),
            Some(v) => {
                self.uint(1);
                self.int(v);
            }
        }
    }

    fn time(&mut self, t: &Time) {
        self.int(t.0.as_second());
        self.uint(t.0.subsec_nanosecond() as u64);
    }

    fn opt_time(&mut self, t: Option<&Time>) {
        match t {
            None => self.uint(0),
            Some(t) => {
                self.uint(1);
                self.time(t);
            }
        }
    }
}

/// Reads what `Writer` wrote. The bytes never come from outside the process, so a malformed
/// buffer is a bug here, and panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn uint(&mut self) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let (&byte, rest) = self.0.split_first().expect("packed resource is complete");
            self.0 = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    fn int(&mut self) -> i64 {
        let v = self.uint();
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }

    fn bytes(&mut self, len: usize) -> &'a str {
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(s).expect("packed from a str")
    }

    fn str(&mut self) -> &'a str {
        let len = self.uint() as usize;
        self.bytes(len)
    }

    fn string(&mut self) -> String {
        self.str().to_owned()
    }

    fn opt_str(&mut self) -> Option<&'a str> {
        match self.uint() as usize {
            0 => None,
            n => Some(self.bytes(n - 1)),
        }
    }

    fn opt_string(&mut self) -> Option<String> {
        self.opt_str().map(str::to_owned)
    }

    fn opt_int(&mut self) -> Option<i64> {
        (self.uint() != 0).then(|| self.int())
    }

    fn time(&mut self) -> Time {
        let (secs, nanos) = (self.int(), self.uint() as i32);
        Time(Timestamp::new(secs, nanos).expect("packed from a Timestamp"))
    }

    fn opt_time(&mut self) -> Option<Time> {
        (self.uint() != 0).then(|| self.time())
    }
}
