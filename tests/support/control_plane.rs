//! A real kube-apiserver + etcd + kube-controller-manager, built by `make control-plane`
//! from the Go modules in `tests/control-plane/`, started once per test binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::{repo_root, tool};

const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

pub struct ControlPlane {
    child: Mutex<Option<Child>>,
    data_dir: PathBuf,
    kubeconfig: PathBuf,
    binary: PathBuf,
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
            let cp = ControlPlane::launch(true);
            cp.install_crds();
            cp
        })
    }

    /// A control plane of its own, stopped and deleted on drop (also when the test panics).
    /// It can be restarted with its data kept.
    pub fn start() -> ControlPlane {
        ControlPlane::launch(false)
    }

    fn launch(remove_data_dir_on_exit: bool) -> ControlPlane {
        super::init_crypto();
        let binary = std::env::var_os("PWRESET_CONTROL_PLANE")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/control-plane/kube-control-plane"));
        assert!(
            binary.exists(),
            "the test control plane {} is missing: run `make control-plane` (needs Go 1.26+; \
             `make test` builds it too)",
            binary.display()
        );
        let data_dir = repo_root().join("target/test-clusters").join(super::unique_name(&test_binary_name()));
        std::fs::create_dir_all(&data_dir).expect("create control plane data dir");
        let port = super::operator::free_port();
        let child = spawn(&binary, &data_dir, port, remove_data_dir_on_exit);
        let kubeconfig = data_dir.join("admin.kubeconfig");
        ControlPlane { child: Mutex::new(Some(child)), data_dir, kubeconfig, binary, port }
    }

    /// Stops the control plane (SIGTERM) and starts it again on the same data dir and
    /// port: etcd keeps every object, clients reconnect, tokens stay valid.
    pub fn restart(&self) {
        let mut guard = self.child.lock().unwrap();
        if let Some(mut child) = guard.take() {
            super::operator::terminate(&mut child, STOP_TIMEOUT);
        }
        *guard = Some(spawn(&self.binary, &self.data_dir, self.port, false));
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A cluster-admin client. A new one per call: a kube client belongs to the tokio
    /// runtime it was made on, and every `#[tokio::test]` has its own.
    pub async fn client(&self) -> kube::Client {
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&self.kubeconfig).expect("read admin.kubeconfig"),
            &KubeConfigOptions::default(),
        )
        .await
        .expect("kubeconfig");
        kube::Client::try_from(config).expect("kube client")
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
        super::operator::terminate(&mut child, STOP_TIMEOUT);
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Starts the supervisor and waits for its `ready` line. It exits with the test process
/// (--exit-with-parent), so nothing outlives a test binary, even one that aborts.
fn spawn(binary: &Path, data_dir: &Path, port: u16, remove_data_dir_on_exit: bool) -> Child {
    let mut cmd = Command::new(binary);
    cmd.arg("--data-dir").arg(data_dir).arg("--port").arg(port.to_string()).arg("--exit-with-parent");
    if remove_data_dir_on_exit {
        cmd.arg("--remove-data-dir");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.trim() == "ready" {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(START_TIMEOUT).is_err() {
        let _ = child.kill();
        panic!("control plane did not print `ready` within {START_TIMEOUT:?}; logs are in {}", data_dir.display());
    }
    child
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
