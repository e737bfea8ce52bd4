//! One test's world: its own namespace on the shared control plane, its own Graph
//! emulator, a credentials Secret, and the operator watching only that namespace.

use std::time::Duration;

use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::api::{Api, ListParams, PostParams};
use pwreset_operator::api::PasswordResetOperation;
use serde_json::{Value, json};

use crate::{ControlPlane, Emulator, Operator, eventually};

pub const TENANT: &str = "contoso";
pub const SECRET: &str = "graph-credentials";

pub struct Harness {
    pub cp: &'static ControlPlane,
    pub ns: String,
    pub emulator: Emulator,
    pub operator: Operator,
    pub client: kube::Client,
    /// The bearer token in the Secret: tests scan for it where it must never appear.
    pub token: String,
}

impl Harness {
    /// Namespace, emulator with a static token, Secret `graph-credentials`, and the
    /// operator started with `--poll-interval 1s` plus `extra_args`.
    pub async fn start(extra_args: &[&str]) -> Harness {
        let parts = Self::start_without_operator().await;
        let operator = parts.start_operator(extra_args);
        operator.wait_ready().await;
        parts.with_operator(operator)
    }

    /// Everything but the operator (started later with `start_operator`).
    pub async fn start_without_operator() -> HarnessParts {
        let cp = ControlPlane::shared();
        let client = cp.client().await;
        let ns = crate::unique_name("op");
        crate::kube::create_namespace(&client, &ns).await.unwrap_or_else(|e| panic!("create namespace {ns}: {e:#}"));
        let emulator = Emulator::start();
        let token = format!("tok-{}", uuid::Uuid::new_v4());
        emulator.add_token(&token, TENANT).await;
        let parts = HarnessParts { cp, ns, emulator, client, token };
        parts.create_token_secret(SECRET).await;
        parts
    }

    pub fn api(&self) -> Api<PasswordResetOperation> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn create(&self, name: &str, spec: Value) -> PasswordResetOperation {
        create(&self.client, &self.ns, name, spec).await
    }

    /// Waits until condition `type_` has `status`; returns the resource then.
    pub async fn wait_condition(&self, name: &str, type_: &str, status: &str) -> PasswordResetOperation {
        self.wait_for(name, &format!("{type_}={status}"), Duration::from_secs(60), |o| {
            condition(o, type_).map(|c| c.0) == Some(status.to_string())
        })
        .await
    }

    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&PasswordResetOperation) -> bool,
    ) -> PasswordResetOperation {
        let api = self.api();
        eventually(&format!("{name}: {what}"), timeout, || async {
            let obj = api.get(name).await.map_err(|e| e.to_string())?;
            if check(&obj) { Ok(obj) } else { Err(format!("{:?}", obj.status)) }
        })
        .await
    }

    /// Events recorded for the resource `name`, as (type, reason, note).
    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        events(&self.client, &self.ns, name).await
    }

    /// Waits until an event of `name` matches `check` (events are published after the
    /// status write they describe); returns all its events then.
    pub async fn wait_event(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&(String, String, String)) -> bool,
    ) -> Vec<(String, String, String)> {
        eventually(&format!("{name}: event {what}"), Duration::from_secs(20), || async {
            let events = self.events(name).await;
            if events.iter().any(&check) { Ok(events) } else { Err(format!("{events:?}")) }
        })
        .await
    }

    pub async fn create_token_secret(&self, name: &str) {
        create_secret(&self.client, &self.ns, name, json!({"token": self.token})).await;
    }

    /// Stops the operator cleanly and starts a new one (standard flags plus `extra_args`).
    pub async fn restart_operator(&mut self, extra_args: &[&str]) {
        self.operator.stop();
        let operator = start_operator(self.cp, &self.ns, &self.emulator.url, extra_args);
        operator.wait_ready().await;
        self.operator = operator;
    }
}

/// The operator watching `ns` with the emulator as Graph, `--poll-interval 1s` unless
/// `extra_args` sets one.
pub fn start_operator(cp: &ControlPlane, ns: &str, graph_url: &str, extra_args: &[&str]) -> Operator {
    let mut args = vec!["--namespace", ns, "--graph-url", graph_url];
    if !extra_args.contains(&"--poll-interval") {
        args.extend(["--poll-interval", "1s"]);
    }
    args.extend_from_slice(extra_args);
    Operator::start(cp, &args)
}

/// Creates a Secret from string data.
pub async fn create_secret(client: &kube::Client, ns: &str, name: &str, string_data: Value) {
    crate::kube::create_secret(client, ns, name, string_data)
        .await
        .unwrap_or_else(|e| panic!("create Secret {name}: {e:#}"));
}

/// The harness before the operator runs.
pub struct HarnessParts {
    pub cp: &'static ControlPlane,
    pub ns: String,
    pub emulator: Emulator,
    pub client: kube::Client,
    pub token: String,
}

impl HarnessParts {
    pub fn start_operator(&self, extra_args: &[&str]) -> Operator {
        start_operator(self.cp, &self.ns, &self.emulator.url, extra_args)
    }

    pub async fn create_token_secret(&self, name: &str) {
        create_secret(&self.client, &self.ns, name, json!({"token": self.token})).await;
    }

    pub fn with_operator(self, operator: Operator) -> Harness {
        let HarnessParts { cp, ns, emulator, client, token } = self;
        Harness { cp, ns, emulator, operator, client, token }
    }
}

pub async fn create(client: &kube::Client, ns: &str, name: &str, spec: Value) -> PasswordResetOperation {
    Api::<PasswordResetOperation>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &crate::kube::resource(name, spec))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
}

/// (status, reason, message) of condition `type_`.
pub fn condition(obj: &PasswordResetOperation, type_: &str) -> Option<(String, String, String)> {
    obj.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub async fn events(client: &kube::Client, ns: &str, name: &str) -> Vec<(String, String, String)> {
    let list = Api::<CoreEvent>::namespaced(client.clone(), ns)
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap();
    list.items
        .into_iter()
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}
