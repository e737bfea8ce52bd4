//! Proof that the test control plane is a real Kubernetes API server: CRDs with schemas
//! and a status subresource, watches, server-side validation, RBAC and service-account
//! tokens all behave as they do in a cluster.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher;
use pwreset_testkit::control_plane::Options;
use pwreset_testkit::{ControlPlane, eventually};
use serde_json::json;

const WIDGET_CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1",
  "kind": "CustomResourceDefinition",
  "metadata": {"name": "widgets.e2e.pwreset.dev"},
  "spec": {
    "group": "e2e.pwreset.dev",
    "scope": "Namespaced",
    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
    "versions": [{
      "name": "v1", "served": true, "storage": true,
      "subresources": {"status": {}},
      "schema": {"openAPIV3Schema": {
        "type": "object",
        "properties": {
          "spec": {"type": "object", "required": ["size"],
                   "properties": {"size": {"type": "integer", "minimum": 1, "maximum": 10}}},
          "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
        }
      }}
    }]
  }
}"#;

fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("e2e.pwreset.dev", "v1", "Widget"), "widgets")
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("create namespace");
}

#[tokio::test]
async fn control_plane_is_a_real_api_server() {
    let cp = ControlPlane::shared();
    let client = cp.client().await;

    let version = client.apiserver_version().await.expect("server version");
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "36"), "{version:?}");
    assert!(cp.kubectl_ok(&["version"]).contains("Server Version: v1.36"));

    // A CRD with a schema and a status subresource.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_str(WIDGET_CRD).unwrap();
    crds.patch("widgets.e2e.pwreset.dev", &PatchParams::apply("e2e").force(), &Patch::Apply(&crd))
        .await
        .expect("apply CRD");
    eventually("widgets CRD established", Duration::from_secs(30), || async {
        let crd = crds.get("widgets.e2e.pwreset.dev").await.map_err(|e| e.to_string())?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        established.then_some(()).ok_or_else(|| "not established".to_string())
    })
    .await;

    let ns = pwreset_testkit::unique_name("widgets");
    create_namespace(&client, &ns).await;
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &widget_resource());

    // Watch first, so the status change below must arrive through the watch.
    let mut events = watcher(widgets.clone(), watcher::Config::default()).boxed();

    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "e2e.pwreset.dev/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3}
    }))
    .unwrap();
    widgets.create(&PostParams::default(), &widget).await.expect("create widget");

    // A status write through the subresource; a spec change there would be ignored.
    widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Done"}, "spec": {"size": 9}})),
        )
        .await
        .expect("patch status");

    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.try_next().await.expect("watch stream") {
            if let watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) = event
                && obj.data["status"]["phase"] == "Done"
            {
                return obj;
            }
        }
        panic!("watch ended");
    })
    .await
    .expect("status change seen through the watch");
    assert_eq!(seen.data["spec"]["size"], 3, "the status subresource must not change spec");

    // Server-side schema validation, with the server's own message.
    let too_big: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "e2e.pwreset.dev/v1", "kind": "Widget",
        "metadata": {"name": "w2"}, "spec": {"size": 50}
    }))
    .unwrap();
    let err = widgets.create(&PostParams::default(), &too_big).await.expect_err("schema violation");
    let kube::Error::Api(status) = err else { panic!("expected an API error, got {err:?}") };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("spec.size") && status.message.contains("less than or equal to 10"),
        "{}",
        status.message
    );

    // RBAC: a service account without a binding is denied; with one it is allowed,
    // which proves the token itself authenticated and the denial was authorization.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "nobody"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.expect("create service account");
    let token = cp.kubectl_ok(&["create", "token", "nobody", "-n", &ns]).trim().to_string();
    let as_sa = client_with_token(cp, &token).await;
    let sa_widgets: Api<DynamicObject> = Api::namespaced_with(as_sa, &ns, &widget_resource());
    match sa_widgets.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(status.message.contains("system:serviceaccount:"), "{}", status.message);
        }
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
    cp.kubectl_ok(&["create", "role", "widget-reader", "-n", &ns, "--verb=list", "--resource=widgets.e2e.pwreset.dev"]);
    cp.kubectl_ok(&[
        "create",
        "rolebinding",
        "widget-reader",
        "-n",
        &ns,
        "--role=widget-reader",
        &format!("--serviceaccount={ns}:nobody"),
    ]);
    eventually("service account allowed after binding", Duration::from_secs(30), || async {
        sa_widgets.list(&Default::default()).await.map(|l| l.items.len()).map_err(|e| e.to_string())
    })
    .await;
}

#[tokio::test]
async fn two_control_planes_run_side_by_side_and_stop_cleanly() {
    let a = ControlPlane::start();
    let b = ControlPlane::start();
    let (ca, cb) = (a.client().await, b.client().await);
    create_namespace(&ca, "only-in-a").await;
    let in_b = Api::<Namespace>::all(cb).get_opt("only-in-a").await.expect("get");
    assert!(in_b.is_none(), "the two control planes must not share storage");

    let dir = a.data_dir().to_path_buf();
    let started = std::time::Instant::now();
    a.stop();
    assert!(started.elapsed() < Duration::from_secs(10), "stop took {:?}", started.elapsed());
    assert!(!dir.exists(), "data dir {} left behind", dir.display());
    let leftovers = processes_mentioning(&dir.to_string_lossy());
    assert!(leftovers.is_empty(), "processes still running after stop: {leftovers:?}");

    // A restart keeps the data and the address: the same client works again.
    create_namespace(&b.client().await, "survives-restart").await;
    b.restart();
    let client = b.client().await;
    let kept = Api::<Namespace>::all(client).get_opt("survives-restart").await.expect("get after restart");
    assert!(kept.is_some(), "etcd data lost across a restart");
    drop(b);
}

/// The port the test kit picks can be taken before kube-apiserver binds it (CI saw this
/// once): the start must go on, on another port, rather than fail the suite.
#[tokio::test]
async fn a_control_plane_whose_port_is_taken_starts_on_another() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().unwrap().port();
    let log = std::env::temp_dir().join(pwreset_testkit::unique_name("taken-port.log"));
    let cp = ControlPlane::start_with(Options { port: Some(port), log: Some(log.clone()), ..Options::default() })
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Control: the first try did hit the taken port.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains(&format!("127.0.0.1:{port}: bind: address already in use")),
        "the first start did not collide with port {port}; its log:\n{text}"
    );
    assert_ne!(cp.port(), port);
    let namespaces = Api::<Namespace>::all(cp.client().await).list(&Default::default()).await.expect("list");
    assert!(!namespaces.items.is_empty(), "the control plane on port {} does not answer", cp.port());
    drop(cp);
    drop(taken);
    let _ = std::fs::remove_file(log);
}

/// Command lines of live processes that name `needle` (the apiserver and controller
/// manager carry the data dir in their flags).
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmd| cmd.contains(needle))
        .collect()
}

async fn client_with_token(cp: &ControlPlane, token: &str) -> kube::Client {
    let mut config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(cp.kubeconfig()).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    config.auth_info = kube::config::AuthInfo { token: Some(token.to_string().into()), ..Default::default() };
    kube::Client::try_from(config).unwrap()
}
