//! Records what a build of the operator leaves in the cluster, for `tests/upgrade.rs`:
//!
//! ```sh
//! cargo run -p pwreset-testkit --bin record-upgrade-fixture -- <previous pwreset-operator> tests/upgrade/<version>.json
//! ```
//!
//! Runs the upgrade scenario (`pwreset_testkit::upgrade::cases`) on a fresh control plane
//! and Graph emulator with the given binary, waits until every resource shows its reason,
//! stops the operator and writes the resources with their statuses.

use std::path::PathBuf;

use anyhow::Context as _;
use pwreset_testkit::upgrade::{self, NAMESPACE, SECRET};
use pwreset_testkit::{ControlPlane, Emulator, harness, kube, operator};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pwreset_testkit::init_crypto();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [binary, out] = args.as_slice() else {
        anyhow::bail!("usage: record-upgrade-fixture <pwreset-operator binary> <output .json>");
    };
    let binary = std::fs::canonicalize(binary).with_context(|| binary.to_string())?;
    let version = std::process::Command::new(&binary).arg("--version").output()?;
    let build = String::from_utf8_lossy(&version.stdout).trim().to_string();
    anyhow::ensure!(version.status.success() && !build.is_empty(), "{} --version failed", binary.display());

    let cp = ControlPlane::start();
    cp.install_crds();
    let client = cp.client().await;
    kube::create_namespace(&client, NAMESPACE).await?;
    let emulator = Emulator::start();
    let token = upgrade::script_graph(&emulator, |c| c.graph, |_| None).await;
    harness::create_secret(&client, NAMESPACE, SECRET, json!({"token": token})).await;
    for case in upgrade::cases() {
        let mut obj = kube::resource(case.name, upgrade::spec(&case));
        let annotations = case.annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        obj.metadata.annotations = Some(annotations).filter(|a: &std::collections::BTreeMap<_, _>| !a.is_empty());
        ::kube::Api::namespaced(client.clone(), NAMESPACE).create(&Default::default(), &obj).await?;
    }
    let mut options = operator::Options::new(&cp, &["--namespace", NAMESPACE, "--graph-url", &emulator.url]);
    options.binary = Some(binary);
    let mut op = pwreset_testkit::Operator::start_with(options)?;
    let fixture = upgrade::capture(&cp, &build).await;
    op.stop();
    let fixture = fixture?;
    let out = PathBuf::from(out);
    std::fs::write(&out, serde_json::to_string_pretty(&fixture)? + "\n")?;
    println!("{}: {} resources written by {}", out.display(), fixture.resources.len(), fixture.build);
    Ok(())
}
