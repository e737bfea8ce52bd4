//! The operation store: scripted `longRunningOperation`s keyed by user and
//! id, with O(1) lookups and bounded size.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use super::config::{OperationSpec, PASSWORD_METHOD_ID, ScriptedResponse, Step, TimestampStyle};
use super::progression::{self, Position};
use super::timefmt::format_operation_time;
use super::users::{encode_segment, user_path};

/// Users are matched case-insensitively (GUIDs and UPNs both are in Entra);
/// operation ids exactly.
type Key = (String, String);

fn key(user: &str, id: &str) -> Key {
    (user.to_lowercase(), id.to_owned())
}

/// Truncates to .NET ticks (100 ns), the precision Graph's timestamps
/// carry, so the admin view and the Graph body show the same instant.
fn to_ticks(ts: Timestamp) -> Timestamp {
    let ns = ts.as_nanosecond();
    Timestamp::from_nanosecond(ns - ns.rem_euclid(100)).unwrap_or(ts)
}

/// Settings an operation needs when it is built from a spec.
pub struct Defaults<'a> {
    pub progression: &'a [Step],
    pub graph_root: &'a str,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub user_id: String,
    pub id: String,
    pub user_principal_name: Option<String>,
    pub tenant: Option<String>,
    pub created_at: Timestamp,
    /// Sorted by `after_ms`.
    pub steps: Vec<Step>,
    pub timestamp_style: TimestampStyle,
    pub resource_location: Option<String>,
    pub status_detail: Option<String>,
    pub extra_fields: Option<Map<String, Value>>,
    pub appear_after_ms: Option<u64>,
    pub purge_after_ms: Option<u64>,
    pub respond: VecDeque<ScriptedResponse>,
    /// Tells a live entry from a replaced one in the eviction queue.
    generation: u64,
}

impl Operation {
    pub fn from_spec(spec: OperationSpec, now: Timestamp, defaults: &Defaults<'_>) -> Self {
        let mut steps = match (spec.steps, spec.status) {
            (Some(steps), _) => steps,
            (None, Some(status)) => vec![Step::new(&status, 0)],
            (None, None) => defaults.progression.to_vec(),
        };
        progression::normalize(&mut steps);
        let resource_location = spec.resource_location.unwrap_or_else(|| {
            Some(format!(
                "{}/v1.0/{}/authentication/methods/{PASSWORD_METHOD_ID}",
                defaults.graph_root,
                user_path(&spec.user_id)
            ))
        });
        Operation {
            id: spec.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            user_id: spec.user_id,
            user_principal_name: spec.user_principal_name,
            tenant: spec.tenant,
            created_at: spec.created_at.unwrap_or_else(|| to_ticks(now)),
            steps,
            timestamp_style: spec.timestamp_style,
            resource_location,
            status_detail: spec.status_detail,
            extra_fields: spec.extra_fields,
            appear_after_ms: spec.appear_after_ms,
            purge_after_ms: spec.purge_after_ms,
            respond: spec.respond.into(),
            generation: 0,
        }
    }

    /// The spec that recreates this operation as it is now.
    pub fn to_spec(&self) -> OperationSpec {
        OperationSpec {
            user_id: self.user_id.clone(),
            id: Some(self.id.clone()),
            user_principal_name: self.user_principal_name.clone(),
            tenant: self.tenant.clone(),
            created_at: Some(self.created_at),
            status: None,
            steps: Some(self.steps.clone()),
            timestamp_style: self.timestamp_style,
            resource_location: Some(self.resource_location.clone()),
            status_detail: self.status_detail.clone(),
            extra_fields: self.extra_fields.clone(),
            appear_after_ms: self.appear_after_ms,
            purge_after_ms: self.purge_after_ms,
            respond: self.respond.iter().cloned().collect(),
        }
    }

    fn elapsed_ms(&self, now: Timestamp) -> i64 {
        now.as_millisecond() - self.created_at.as_millisecond()
    }

    pub fn position(&self, now: Timestamp) -> Position<'_> {
        progression::position(&self.steps, self.elapsed_ms(now))
    }

    fn status_detail_at(&self, pos: &Position<'_>) -> Option<String> {
        match pos.status_detail {
            Some(step_detail) => step_detail.map(str::to_owned),
            None => self.status_detail.clone(),
        }
    }

    /// Readable by Graph clients now? (`appearAfterMs` / `purgeAfterMs`)
    pub fn visible(&self, now: Timestamp) -> bool {
        let elapsed = self.elapsed_ms(now);
        let appeared = self.appear_after_ms.is_none_or(|a| elapsed >= a as i64);
        let purged = self.purge_after_ms.is_some_and(|p| elapsed >= p as i64);
        appeared && !purged
    }

    /// The Graph body for a GET at `now`, addressed as `path_user`.
    pub fn render(
        &self,
        now: Timestamp,
        path_user: &str,
        graph_root: &str,
        include_unknown_members: bool,
    ) -> Map<String, Value> {
        let pos = self.position(now);
        let last_action =
            self.created_at.checked_add(SignedDuration::from_millis(pos.since_ms as i64)).unwrap_or(self.created_at);
        let time = |ts| format_operation_time(ts, self.timestamp_style).map_or(Value::Null, Value::String);
        let mut body = Map::new();
        body.insert(
            "@odata.context".into(),
            json!(format!(
                "{graph_root}/v1.0/$metadata#users('{}')/authentication/operations/$entity",
                encode_segment(path_user)
            )),
        );
        body.insert("id".into(), json!(self.id));
        body.insert("status".into(), json!(progression::wire_status(pos.status, include_unknown_members)));
        body.insert("createdDateTime".into(), time(self.created_at));
        body.insert("lastActionDateTime".into(), time(last_action));
        body.insert("resourceLocation".into(), json!(self.resource_location));
        body.insert("statusDetail".into(), json!(self.status_detail_at(&pos)));
        if let Some(extra) = &self.extra_fields {
            body.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        body
    }

    /// Admin view: the spec plus its Graph URL and where it stands now.
    pub fn view(&self, now: Timestamp, location: String) -> Value {
        let pos = self.position(now);
        let mut v = serde_json::to_value(self.to_spec()).unwrap_or_else(|_| json!({}));
        if let Value::Object(map) = &mut v {
            map.insert("location".into(), json!(location));
            map.insert("currentStatus".into(), json!(pos.status));
            map.insert("currentStatusDetail".into(), json!(self.status_detail_at(&pos)));
            map.insert("visible".into(), json!(self.visible(now)));
        }
        v
    }

    /// Sets the state at `now`: future steps are dropped so the change
    /// sticks, and a step starting now is appended.
    pub fn set_status(&mut self, now: Timestamp, status: String, detail: Option<Option<String>>) {
        let at = self.elapsed_ms(now).max(0) as u64;
        self.steps.retain(|s| s.after_ms <= at);
        self.steps.push(Step { status, after_ms: at, status_detail: detail });
    }
}

/// What a Graph GET finds.
pub enum Poll {
    NotFound,
    /// The next entry of the operation's `respond` queue; `normal` is the
    /// regular answer (if the operation is visible), for 2xx entries that
    /// only add a delay.
    Scripted {
        response: ScriptedResponse,
        normal: Option<Map<String, Value>>,
    },
    Found(Map<String, Value>),
}

/// How a GET is rendered.
pub struct PollRequest<'a> {
    pub user: &'a str,
    pub id: &'a str,
    /// Tenant of the caller's token.
    pub tenant: &'a str,
    pub graph_root: &'a str,
    pub include_unknown_members: bool,
}

pub struct OperationStore {
    ops: HashMap<Key, Operation>,
    /// `(upn, id)` → key, so operations can also be read through a UPN.
    by_upn: HashMap<Key, Key>,
    /// Insertion order for eviction; stale entries are skipped.
    order: VecDeque<(Key, u64)>,
    next_generation: u64,
    max: usize,
}

impl OperationStore {
    pub fn new(max: usize) -> Self {
        OperationStore {
            ops: HashMap::new(),
            by_upn: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
            max: max.max(1),
        }
    }

    pub fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
        self.evict();
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Inserts or replaces (same user and id).
    pub fn insert(&mut self, mut op: Operation) {
        let k = key(&op.user_id, &op.id);
        if let Some(old) = self.ops.remove(&k) {
            self.unlink_upn(&old);
        }
        self.next_generation += 1;
        op.generation = self.next_generation;
        self.order.push_back((k.clone(), op.generation));
        if let Some(upn) = &op.user_principal_name {
            self.by_upn.insert(key(upn, &op.id), k.clone());
        }
        self.ops.insert(k, op);
        self.evict();
    }

    /// Drops the UPN alias of a removed operation, unless it was re-pointed.
    fn unlink_upn(&mut self, op: &Operation) {
        if let Some(upn) = &op.user_principal_name {
            let upn_key = key(upn, &op.id);
            if self.by_upn.get(&upn_key) == Some(&key(&op.user_id, &op.id)) {
                self.by_upn.remove(&upn_key);
            }
        }
    }

    fn evict(&mut self) {
        while self.ops.len() > self.max {
            let Some((k, generation)) = self.order.pop_front() else {
                break;
            };
            if let Entry::Occupied(e) = self.ops.entry(k)
                && e.get().generation == generation
            {
                let old = e.remove();
                self.unlink_upn(&old);
            }
        }
        // Replacements leave stale queue entries behind: compact now and
        // then so the queue stays proportional to the store.
        if self.order.len() > 2 * self.ops.len() + 1024 {
            let ops = &self.ops;
            self.order.retain(|(k, g)| ops.get(k).is_some_and(|op| op.generation == *g));
        }
    }

    fn resolve(&self, user: &str, id: &str) -> Option<Key> {
        let k = key(user, id);
        if self.ops.contains_key(&k) {
            return Some(k);
        }
        self.by_upn.get(&k).cloned()
    }

    pub fn get(&self, user: &str, id: &str) -> Option<&Operation> {
        self.resolve(user, id).and_then(|k| self.ops.get(&k))
    }

    pub fn get_mut(&mut self, user: &str, id: &str) -> Option<&mut Operation> {
        let k = self.resolve(user, id)?;
        self.ops.get_mut(&k)
    }

    pub fn remove(&mut self, user: &str, id: &str) -> Option<Operation> {
        let k = self.resolve(user, id)?;
        let op = self.ops.remove(&k)?;
        self.unlink_upn(&op);
        Some(op)
    }

    pub fn clear(&mut self) {
        self.ops.clear();
        self.by_upn.clear();
        self.order.clear();
    }

    /// All operations, oldest first.
    pub fn all(&self) -> Vec<&Operation> {
        let mut v: Vec<_> = self.ops.values().collect();
        v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        v
    }

    /// Answers a Graph GET at `now`, consuming one scripted response if any.
    pub fn poll(&mut self, req: &PollRequest<'_>, now: Timestamp) -> Poll {
        let Some(op) = self.get_mut(req.user, req.id) else {
            return Poll::NotFound;
        };
        // Another tenant's directory does not contain this user.
        if op.tenant.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case(req.tenant)) {
            return Poll::NotFound;
        }
        let scripted = op.respond.pop_front();
        let normal = op.visible(now).then(|| op.render(now, req.user, req.graph_root, req.include_unknown_members));
        match (scripted, normal) {
            (Some(response), normal) => Poll::Scripted { response, normal },
            (None, Some(body)) => Poll::Found(body),
            (None, None) => Poll::NotFound,
        }
    }
}

#[cfg(test)]
mod tests;
