//! A real kube-apiserver + etcd + kube-controller-manager, built by `make control-plane`
//! from the Go modules in `tests/control-plane/`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;

use crate::process::{ExitedDuringStartup, children_of, free_port, prepare, terminate, wait_for_line};
use crate::{repo_root, tool, unique_name};

const START_TIMEOUT: Duration = Duration::from_secs(180);
/// A port found free can be taken by another socket before kube-apiserver binds it; a
/// start that ends early is tried again on another port, up to this many times in all.
const START_ATTEMPTS: usize = 3;
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start a control plane; `Default` is a fresh one under `target/test-clusters/`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `$PWRESET_CONTROL_PLANE`, else `target/control-plane/kube-control-plane`.
    pub binary: Option<PathBuf>,
    /// Emptied first if it exists.
    pub data_dir: Option<PathBuf>,
    /// Where its stderr goes (inherited when None).
    pub log: Option<PathBuf>,
    /// Keep the data dir after stopping (for a look at etcd and the component logs).
    pub keep_data: bool,
    /// The kube-apiserver port tried first (a free one when None).
    pub port: Option<u16>,
}

pub struct ControlPlane {
    child: Mutex<Option<Child>>,
    data_dir: PathBuf,
    kubeconfig: PathBuf,
    binary: PathBuf,
    log: Option<PathBuf>,
    keep_data: bool,
    /// The apiserver port, fixed so that a restart keeps every kubeconfig valid.
    port: u16,
}

static SHARED: OnceLock<ControlPlane> = OnceLock::new();

impl ControlPlane {
    /// The control plane this test binary shares, with the project's CRDs installed.
    /// Tests isolate themselves by namespace. It stops when the test binary exits (the
    /// control plane watches its parent process), also after a panic.
    pub fn shared() -> &'static ControlPlane {
        SHARED.get_or_init(|| {
            // Never dropped: the supervisor deletes its data dir when this process exits.
            let cp = ControlPlane::launch(Options::default(), true).unwrap_or_else(|e| panic!("{e:#}"));
            cp.install_crds();
            cp
        })
    }

    /// A control plane of its own, stopped and deleted on drop (also when the test panics).
    /// It can be restarted with its data kept.
    pub fn start() -> ControlPlane {
        ControlPlane::start_with(Options::default()).unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn start_with(options: Options) -> anyhow::Result<ControlPlane> {
        ControlPlane::launch(options, false)
    }

    fn launch(options: Options, remove_data_dir_on_exit: bool) -> anyhow::Result<ControlPlane> {
        crate::init_crypto();
        let binary = options
            .binary
            .or_else(|| std::env::var_os("PWRESET_CONTROL_PLANE").map(PathBuf::from))
            .unwrap_or_else(|| repo_root().join("target/control-plane/kube-control-plane"));
        anyhow::ensure!(
            binary.exists(),
            "the test control plane {} is missing: run `make control-plane` (needs Go 1.26+; \
             `make test` and `make bench` build it too)",
            binary.display()
        );
        let data_dir = options
            .data_dir
            .unwrap_or_else(|| repo_root().join("target/test-clusters").join(unique_name(&test_binary_name())));
        let mut port = options.port.unwrap_or_else(free_port);
        let mut attempt = 1;
        let child = loop {
            // Fresh each time: a supervisor started with --remove-data-dir deletes it on exit.
            if data_dir.exists() {
                std::fs::remove_dir_all(&data_dir).with_context(|| format!("removing {}", data_dir.display()))?;
            }
            std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            match spawn(&binary, &data_dir, port, remove_data_dir_on_exit, options.log.as_deref()) {
                Ok(child) => break child,
                Err(e) if attempt < START_ATTEMPTS && e.downcast_ref::<ExitedDuringStartup>().is_some() => {
                    eprintln!("test control plane on port {port}: {e:#}; starting again on another port");
                    port = free_port();
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        Ok(ControlPlane {
            child: Mutex::new(Some(child)),
            kubeconfig: data_dir.join("admin.kubeconfig"),
            data_dir,
            binary,
            log: options.log,
            keep_data: options.keep_data,
            port,
        })
    }

    /// Stops the control plane (SIGTERM) and starts it again on the same data dir and
    /// port: etcd keeps every object, clients reconnect, tokens stay valid.
    pub fn restart(&self) {
        let mut guard = self.child.lock().unwrap();
        if let Some(mut child) = guard.take() {
            terminate(&mut child, STOP_TIMEOUT);
        }
        let child = spawn(&self.binary, &self.data_dir, self.port, false, self.log.as_deref());
        *guard = Some(child.unwrap_or_else(|e| panic!("{e:#}")));
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// kube-apiserver's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A copy of the admin kubeconfig that acts as `user` (impersonation, e.g.
    /// `system:serviceaccount:NS:NAME`): what that account's RBAC allows, nothing more.
    pub fn kubeconfig_as(&self, user: &str) -> PathBuf {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("the admin kubeconfig");
        let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
        for entry in config["users"].as_sequence_mut().expect("users") {
            entry["user"]["as"] = user.into();
        }
        let path = self.data_dir.join(format!("{}.kubeconfig", crate::unique_name("impersonating")));
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).expect("write the kubeconfig");
        path
    }

    /// A ServiceAccount `name` in `ns` with a Role (also `name`) granting what the chart grants
    /// in one namespace minus `patch passwordresetoperations/status`; returns a kubeconfig
    /// acting as it.
    pub fn account_without_status_writes(&self, ns: &str, name: &str) -> PathBuf {
        let manifest = format!(
            r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {name}, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: {name}, namespace: {ns}}}
rules:
  - {{apiGroups: [pwreset.dev], resources: [passwordresetoperations], verbs: [get, list, watch, delete]}}
  - {{apiGroups: [pwreset.dev], resources: [passwordresetoperations/status], verbs: [get]}}
  - {{apiGroups: [events.k8s.io], resources: [events], verbs: [create, patch]}}
  - {{apiGroups: [""], resources: [secrets], verbs: [get, patch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {name}, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {name}}}
subjects: [{{kind: ServiceAccount, name: {name}, namespace: {ns}}}]
"#
        );
        let path = self.data_dir.join(format!("{ns}-{name}.yaml"));
        std::fs::write(&path, manifest).expect("write the RBAC manifest");
        self.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
        self.kubeconfig_as(&format!("system:serviceaccount:{ns}:{name}"))
    }

    /// The supervisor and its children (kube-apiserver, kube-controller-manager); etcd runs
    /// inside the supervisor.
    pub fn pids(&self) -> Vec<u32> {
        let guard = self.child.lock().unwrap();
        let Some(child) = guard.as_ref() else { return Vec::new() };
        let mut pids = vec![child.id()];
        pids.extend(children_of(child.id()));
        pids
    }

    /// A cluster-admin client. A new one per call: a kube client belongs to the tokio
    /// runtime it was made on, and every `#[tokio::test]` has its own.
    pub async fn client(&self) -> kube::Client {
        crate::kube::client(&self.kubeconfig).await.unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `kubectl` pointed at this control plane.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(tool("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Runs kubectl and returns stdout; panics with stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl().args(args).output().expect("run kubectl");
        assert!(out.status.success(), "kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies `crds/` the way a user does and waits until the API serves them.
    pub fn install_crds(&self) {
        let crds = repo_root().join("crds");
        self.kubectl_ok(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
        self.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", "-f", crds.to_str().unwrap()]);
    }

    /// SIGTERM, then wait: the control plane stops its children and etcd cleanly.
    pub fn stop(&self) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        terminate(&mut child, STOP_TIMEOUT);
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Starts the supervisor and waits for its `ready` line. It exits with the process that
/// started it (--exit-with-parent), so nothing outlives a test binary, even one that aborts.
fn spawn(
    binary: &Path,
    data_dir: &Path,
    port: u16,
    remove_data_dir_on_exit: bool,
    log: Option<&Path>,
) -> anyhow::Result<Child> {
    let mut cmd = Command::new(binary);
    cmd.arg("--data-dir").arg(data_dir).arg("--port").arg(port.to_string()).arg("--exit-with-parent");
    if remove_data_dir_on_exit {
        cmd.arg("--remove-data-dir");
    }
    let stderr = match log {
        Some(path) => Stdio::from(File::options().create(true).append(true).open(path)?),
        None => Stdio::inherit(),
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
    prepare(&mut cmd);
    let mut child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
    wait_for_line(&mut child, START_TIMEOUT, "the control plane", |l| (l.trim() == "ready").then(String::new))
        .with_context(|| format!("its logs are in {}", data_dir.display()))?;
    Ok(child)
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn test_binary_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| s.rsplit_once('-').map(|(name, _hash)| name.to_string()).unwrap_or(s))
        .unwrap_or_else(|| "test".into())
        .replace('_', "-")
}
