//! The cluster side of `check`: the CRD, and the permissions the operator needs, asked of
//! the apiserver with SelfSubjectAccessReviews (as the account `check` runs as).

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::{CustomResourceExt, Resource};

use super::{CheckArgs, CheckResult};
use crate::api::PasswordResetOperation;

/// One thing the operator does to the API, asked as `can-i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub verb: &'static str,
    pub group: &'static str,
    /// `resource` or `resource/subresource`.
    pub resource: &'static str,
    /// None: in every namespace.
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Permission {
    fn new(verb: &'static str, group: &'static str, resource: &'static str, namespace: Option<&str>) -> Self {
        Permission { verb, group, resource, namespace: namespace.map(String::from), name: None }
    }

    /// `patch passwordresetoperations/status (pwreset.dev) in namespace team-a`.
    pub fn describe(&self) -> String {
        let group = if self.group.is_empty() { String::new() } else { format!(" ({})", self.group) };
        let name = self.name.as_ref().map(|n| format!(" named {n}")).unwrap_or_default();
        let place = match &self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "in all namespaces".to_string(),
        };
        format!("{} {}{group}{name} {place}", self.verb, self.resource)
    }
}

/// What `run` with these flags does to the API, as the chart's RBAC grants it (rbac.yaml
/// and leader-election-rbac.yaml): its resources and their status, Events, Secrets and,
/// with --leader-elect, its Lease. `pod_namespace` is POD_NAMESPACE (where `run` puts the
/// Lease without --leader-election-namespace).
pub fn permissions(args: &CheckArgs, pod_namespace: Option<&str>) -> Result<Vec<Permission>, String> {
    let run = &args.run;
    let ns = run.namespace.as_deref();
    let mut wanted = Vec::new();
    for verb in ["get", "list", "watch", "delete"] {
        wanted.push(Permission::new(verb, "pwreset.dev", "passwordresetoperations", ns));
    }
    for verb in ["get", "patch"] {
        wanted.push(Permission::new(verb, "pwreset.dev", "passwordresetoperations/status", ns));
    }
    // kube's event Recorder writes events.k8s.io/v1 Events.
    for verb in ["create", "patch"] {
        wanted.push(Permission::new(verb, "events.k8s.io", "events", ns));
    }
    let secret_namespaces: Vec<Option<&str>> = match (&args.secret_namespaces[..], ns) {
        ([], namespace) => vec![namespace],
        (list, _) => list.iter().map(|n| Some(n.as_str())).collect(),
    };
    for namespace in secret_namespaces {
        for verb in ["get", "patch"] {
            if args.secret_names.is_empty() {
                wanted.push(Permission::new(verb, "", "secrets", namespace));
            }
            for name in &args.secret_names {
                wanted.push(Permission { name: Some(name.clone()), ..Permission::new(verb, "", "secrets", namespace) });
            }
        }
    }
    if run.leader_elect {
        let lease_ns = run.leader_election_namespace.as_deref().or(pod_namespace).ok_or(
            "--leader-elect needs --leader-election-namespace or POD_NAMESPACE (where the Lease is) to check its \
             permissions",
        )?;
        wanted.push(Permission::new("create", "coordination.k8s.io", "leases", Some(lease_ns)));
        for verb in ["get", "list", "watch", "update", "patch"] {
            wanted.push(Permission {
                name: Some(run.leader_election_lease_name.clone()),
                ..Permission::new(verb, "coordination.k8s.io", "leases", Some(lease_ns))
            });
        }
    }
    Ok(wanted)
}

/// One `ok` line when everything is allowed, else one `FAIL` line per denied permission.
pub async fn rbac(client: &kube::Client, wanted: &[Permission], timeout: Duration) -> Vec<CheckResult> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut failures = Vec::new();
    for permission in wanted {
        let (resource, subresource) = match permission.resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_string())),
            None => (permission.resource, None),
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(permission.verb.into()),
                    group: Some(permission.group.into()),
                    resource: Some(resource.into()),
                    subresource,
                    namespace: permission.namespace.clone(),
                    name: permission.name.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = tokio::time::timeout(timeout, api.create(&PostParams::default(), &review)).await;
        match answer {
            Ok(Ok(review)) if review.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(Ok(review)) => {
                let why = review.status.and_then(|s| s.reason).filter(|r| !r.is_empty());
                let why = why.map(|r| format!(" ({r})")).unwrap_or_default();
                failures.push(CheckResult::fail("rbac", format!("denied: {}{why}", permission.describe())));
            }
            Ok(Err(e)) => failures.push(CheckResult::fail(
                "rbac",
                format!("could not ask whether it may {}: {e}", permission.describe()),
            )),
            Err(_) => failures.push(CheckResult::fail(
                "rbac",
                format!("no answer within {} to: {}", crate::duration::human(timeout), permission.describe()),
            )),
        }
    }
    if failures.is_empty() {
        vec![CheckResult::pass("rbac", format!("all {} permissions the operator needs are granted", wanted.len()))]
    } else {
        failures
    }
}

/// The CRD is installed, Established, and serves the operator's version. The operator's own
/// account may not read CRDs (the chart grants no such thing): then the API discovery, which
/// every account may read and which lists only established CRDs, answers instead.
pub async fn crd(client: &kube::Client) -> CheckResult {
    let crd_name = PasswordResetOperation::crd_name();
    let version = PasswordResetOperation::version(&());
    let api_version = PasswordResetOperation::api_version(&());
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt(crd_name).await {
        Ok(Some(crd)) => {
            let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            let established = conditions.iter().any(|c| c.type_ == "Established" && c.status == "True");
            let served = crd.spec.versions.iter().any(|v| v.name == version && v.served);
            match (established, served) {
                (true, true) => CheckResult::pass("crd", format!("{crd_name} established ({version})")),
                (false, _) => CheckResult::fail("crd", format!("{crd_name} exists but is not Established yet")),
                (true, false) => CheckResult::fail(
                    "crd",
                    format!(
                        "{crd_name} does not serve {version}, the version this operator reads; apply the chart's CRD"
                    ),
                ),
            }
        }
        Ok(None) => CheckResult::fail(
            "crd",
            format!("{crd_name} is not installed: `pwreset-operator crd | kubectl apply -f -`, or the chart's crds/"),
        ),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            match client.list_api_group_resources(&api_version).await {
                Ok(list) if list.resources.iter().any(|r| r.name == "passwordresetoperations") => CheckResult::pass(
                    "crd",
                    format!(
                        "{crd_name} established ({version}; seen in API discovery, this account may not read CRDs)"
                    ),
                ),
                Ok(_) => {
                    CheckResult::fail("crd", format!("{api_version} is served but has no passwordresetoperations"))
                }
                Err(kube::Error::Api(s)) if s.code == 404 => CheckResult::fail(
                    "crd",
                    format!("{api_version} is not served: {crd_name} is not installed or not established"),
                ),
                Err(e) => CheckResult::fail("crd", format!("API discovery of {api_version} failed: {e}")),
            }
        }
        Err(e) => CheckResult::fail("crd", format!("reading CRD {crd_name} failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: CheckArgs,
    }

    fn wanted(flags: &[&str], pod_ns: Option<&str>) -> Result<Vec<String>, String> {
        let args = Cmd::try_parse_from(std::iter::once("check").chain(flags.iter().copied())).unwrap().args;
        permissions(&args, pod_ns).map(|p| p.iter().map(Permission::describe).collect())
    }

    #[test]
    fn the_permissions_follow_the_charts_rbac_for_the_flags_given() {
        let all = wanted(&[], None).unwrap();
        assert!(all.contains(&"watch passwordresetoperations (pwreset.dev) in all namespaces".to_string()));
        assert!(all.contains(&"patch passwordresetoperations/status (pwreset.dev) in all namespaces".to_string()));
        assert!(all.contains(&"create events (events.k8s.io) in all namespaces".to_string()));
        assert!(all.contains(&"patch secrets in all namespaces".to_string()));
        assert!(!all.iter().any(|p| p.contains("leases")), "{all:?}");

        let one = wanted(&["--namespace", "team-a", "--secret-names", "graph"], None).unwrap();
        assert!(one.contains(&"list passwordresetoperations (pwreset.dev) in namespace team-a".to_string()));
        assert!(one.contains(&"get secrets named graph in namespace team-a".to_string()));
        assert!(!one.iter().any(|p| p.contains("all namespaces")), "{one:?}");

        let spread = wanted(&["--secret-namespaces", "a,b"], None).unwrap();
        assert!(spread.contains(&"get secrets in namespace b".to_string()), "{spread:?}");

        let leader = wanted(&["--leader-elect", "--leader-election-lease-name", "op-lease"], Some("ops")).unwrap();
        assert!(leader.contains(&"create leases (coordination.k8s.io) in namespace ops".to_string()));
        assert!(leader.contains(&"update leases (coordination.k8s.io) named op-lease in namespace ops".to_string()));
        assert!(wanted(&["--leader-elect"], None).unwrap_err().contains("--leader-election-namespace"));
    }
}
