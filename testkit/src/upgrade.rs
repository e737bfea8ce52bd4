//! Upgrades: resources exactly as a previous build of the operator left them.
//!
//! `record-upgrade-fixture` (a binary of this crate) runs [`cases`] with a previous build's
//! `pwreset-operator` and saves every resource with its status to
//! `tests/upgrade/<name>.json`; `tests/upgrade.rs` loads each saved file into a fresh
//! control plane and starts the current build on it. One scenario for both, so a fixture
//! and its replay cannot drift apart.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use kube::api::{Api, ListParams};
use pwreset_operator::api::PasswordResetOperation;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{ControlPlane, Emulator, condition};

/// Status messages name the namespace (e.g. a missing Secret), so every recording and
/// replay uses this one.
pub const NAMESPACE: &str = "upgrade";
pub const SECRET: &str = "graph-credentials";
pub const USER: &str = "upgrade-user@contoso.com";

/// One resource of the scenario.
pub struct Case {
    pub name: &'static str,
    /// The operation's state in Graph when it was recorded (None: no Graph call expected).
    pub graph: Option<&'static str>,
    /// Ready's reason once the previous build has handled it.
    pub reason: &'static str,
    pub secret: &'static str,
    pub annotations: &'static [(&'static str, &'static str)],
}

/// Every state a resource can be left in that an upgrade must not rewrite. The replay moves
/// `moves-on`'s operation to `succeeded`: the one write it must see.
pub fn cases() -> Vec<Case> {
    let case = |name, graph, reason| Case { name, graph, reason, secret: SECRET, annotations: &[] };
    vec![
        case("done-succeeded", Some("succeeded"), "Succeeded"),
        case("done-failed", Some("failed"), "OperationFailed"),
        case("running", Some("running"), "Running"),
        case("not-started", Some("notStarted"), "NotStarted"),
        case("moves-on", Some("running"), "Running"),
        Case { annotations: &[("pwreset.dev/paused", "true")], ..case("paused", Some("running"), "Paused") },
        Case { secret: "no-such-secret", ..case("no-secret", None, "CredentialsSecretNotFound") },
    ]
}

/// Polls a minute apart: within a test, any second GET of a resource is one too many.
pub fn spec(case: &Case) -> Value {
    json!({
        "userId": USER,
        "operationId": format!("op-{}", case.name),
        "credentialsSecretRef": {"name": case.secret},
        "pollInterval": "60s",
    })
}

/// Graph's side of the scenario: a token for the Secret and each case's operation in
/// `state`, created at `created` (Graph's createdDateTime and lastActionDateTime; now when
/// None).
pub async fn script_graph(
    emulator: &Emulator,
    state: impl Fn(&Case) -> Option<&'static str>,
    created: impl Fn(&Case) -> Option<String>,
) -> String {
    let token = format!("tok-{}", uuid::Uuid::new_v4());
    emulator.add_token(&token, "contoso").await;
    for case in cases() {
        if let Some(status) = state(&case) {
            let mut op = json!({"userId": USER, "id": format!("op-{}", case.name), "status": status});
            if let Some(at) = created(&case) {
                op["createdAt"] = json!(at);
            }
            emulator.add_operation(op).await;
        }
    }
    token
}

/// What a build left: each resource's annotations, spec and status, and which build.
#[derive(Debug, Serialize, Deserialize)]
pub struct Fixture {
    /// `pwreset-operator --version` of the build that wrote the statuses.
    pub build: String,
    pub recorded: String,
    pub resources: Vec<Value>,
}

pub fn fixture_dir() -> PathBuf {
    crate::repo_root().join("tests/upgrade")
}

/// Every saved fixture, oldest build first by file name.
pub fn fixtures() -> anyhow::Result<Vec<(String, Fixture)>> {
    let mut files: Vec<_> = std::fs::read_dir(fixture_dir())?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)?;
            let fixture = serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
            Ok((p.file_name().unwrap().to_string_lossy().into_owned(), fixture))
        })
        .collect()
}

/// Waits until every case shows its reason, then keeps what a build wrote.
pub async fn capture(cp: &ControlPlane, build: &str) -> anyhow::Result<Fixture> {
    let api: Api<PasswordResetOperation> = Api::namespaced(cp.client().await, NAMESPACE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = api.list(&ListParams::default()).await?;
        let pending: Vec<String> = cases()
            .iter()
            .filter(|c| {
                let obj = list.items.iter().find(|o| o.metadata.name.as_deref() == Some(c.name));
                obj.and_then(|o| condition(o, "Ready")).is_none_or(|r| r.1 != c.reason)
            })
            .map(|c| format!("{} (want {})", c.name, c.reason))
            .collect();
        if pending.is_empty() {
            let resources = list
                .items
                .iter()
                .map(|o| {
                    json!({
                        "name": o.metadata.name,
                        "annotations": o.metadata.annotations,
                        "spec": o.spec,
                        "status": o.status,
                    })
                })
                .collect();
            let recorded = chrono_free_now();
            return Ok(Fixture { build: build.to_string(), recorded, resources });
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "not settled after 60 s: {pending:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// UTC now as `YYYY-MM-DD` (the testkit has no date crate; `date` is everywhere).
fn chrono_free_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
