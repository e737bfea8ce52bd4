//! The documented-behaviour fixtures (`tests/conformance/operation-get.yaml`) driven through
//! the operator's own code: for every case that names the operator's reaction, the emulator is
//! set up as the case says, the case's URL is given to the operator as a resource's `location`,
//! and the operator's URL rules, Graph client and decisions must end in the reason the README
//! promises. (The emulator's side of the same cases runs in `emulator/tests/conformance.rs`.)

use std::sync::Arc;
use std::time::Duration;

use pwreset_operator::api::{PasswordResetOperationSpec, PasswordResetOperationStatus};
use pwreset_operator::credentials::SecretString;
use pwreset_operator::decide::{self, Input, Policy, Start};
use pwreset_operator::graph::{GraphClient, Outcome, gateway};
use pwreset_operator::metrics::Metrics;
use pwreset_testkit::Emulator;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Fixtures {
    config: Value,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    before: Vec<Value>,
    request: Request,
    #[serde(default)]
    operator: Option<Value>,
}

#[derive(Deserialize)]
struct Request {
    method: String,
    path: String,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
}

fn fixtures() -> Fixtures {
    let path = pwreset_testkit::repo_root().join("tests/conformance/operation-get.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The config a case runs with: the file's, with the case's top-level keys replacing it.
fn config_for(file: &Value, case: &Case) -> Value {
    let mut config = file.clone();
    if let Some(Value::Object(over)) = &case.config {
        for (k, v) in over {
            config[k] = v.clone();
        }
    }
    config
}

fn app_only(config: &Value, token: &str) -> bool {
    config["tokens"].as_array().into_iter().flatten().any(|t| t["token"] == token && t["kind"] == "app")
}

#[tokio::test]
async fn the_operator_reacts_to_each_documented_answer_as_the_readme_says() {
    pwreset_testkit::init_crypto();
    let file = fixtures();
    let emulator = Emulator::start();
    let root: url::Url = emulator.url.parse().unwrap();
    let metrics = Arc::new(Metrics::default());
    let client = GraphClient::new(reqwest::Client::new(), root.clone(), metrics);
    let policy =
        Policy { graph_root: root, poll_interval: Duration::from_secs(15), not_found_grace: Duration::from_secs(120) };
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for case in file.cases.iter().filter(|c| c.request.method == "GET") {
        let Some(want) = case.operator.as_ref().and_then(|o| o["reason"].as_str()) else { continue };
        assert!(case.before.is_empty(), "{}: `before` requests are not driven here", case.name);
        let config = config_for(&file.config, case);
        emulator.admin("PUT", "/config", config.clone()).await;
        let token = case.request.headers.get("authorization").and_then(Value::as_str).unwrap_or("");
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        let spec = PasswordResetOperationSpec {
            user_id: None,
            operation_id: None,
            location: Some(format!("{}{}", emulator.url.trim_end_matches('/'), case.request.path)),
            credentials_secret_ref: None,
            poll_interval: None,
            active_deadline_seconds: None,
            ttl_seconds_after_finished: None,
        };
        let status = PasswordResetOperationStatus::default();
        let input = Input {
            namespace: "ns",
            secret: Some("graph-credentials"),
            spec: &spec,
            generation: Some(1),
            created: Some(jiff::Timestamp::now()),
            status: &status,
            now: jiff::Timestamp::now(),
            failures: 0,
            policy: &policy,
            paused: false,
            reconcile_requested_at: None,
        };
        let decision = match decide::start(&input) {
            Start::Decided(d) => d,
            Start::Poll { url, .. } => {
                let outcome = match client.get_operation(&url, &SecretString::new(token), "t").await {
                    Ok(op) => Outcome::Answer(op),
                    Err(e) => Outcome::Graph(gateway::classify(e, app_only(&config, token))),
                };
                decide::after(&input, &status, &outcome)
            }
        };
        let got = decision.reason.map(|r| r.as_str()).unwrap_or("");
        if got != want {
            failures.push(format!("{}: the operator says {got}, the fixture expects {want}", case.name));
        }
        checked.push(case.name.clone());
    }
    assert!(checked.len() >= 15, "every case with an operator reaction is driven: {checked:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
