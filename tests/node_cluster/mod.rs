//! A control plane with one real node: the test control plane started with `--node-ip`
//! (kube-scheduler, service account tokens, the apiserver advertised to pods) and
//! `kube-control-plane node` (containerd + kubelet + kube-proxy), both built by `make node`.
//! Kept apart from tests/support because only tests/node.rs needs a node.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pwreset_testkit::{repo_root, tool};

/// The node's bridge address (tests/control-plane/node.go): pods reach the host here.
pub const GATEWAY: &str = "10.244.0.1";
pub const NODE_NAME: &str = "pwreset-node";
const BRIDGE: &str = "pwrnode0";

pub struct NodeCluster {
    control_plane: Option<Child>,
    node: Option<Child>,
    pub data_dir: PathBuf,
    pub kubeconfig: PathBuf,
}

/// A file a make target builds; a missing one fails the test with that target's name.
pub fn built(path: &str, target: &str) -> PathBuf {
    let p = repo_root().join(path);
    assert!(p.exists(), "{} is missing: run `make {target}` (or `make test`, which builds it)", p.display());
    p
}

impl NodeCluster {
    /// Starts both and waits (with a deadline) until the node reports Ready.
    pub fn start() -> NodeCluster {
        let binary = built("target/control-plane/kube-control-plane", "node");
        let bin_dir = built("target/node/bin", "node");
        for exe in ["containerd", "ctr", "containerd-shim-runc-v2"] {
            built(&format!("target/node/bin/{exe}"), "node");
        }
        let pause = built("target/image/pause.oci.tar", "node");
        let operator = built("target/image/pwreset-operator.oci.tar", "image");
        for host in ["/usr/sbin/runc", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/sbin/iptables"] {
            assert!(
                Path::new(host).exists(),
                "{host} is missing: run `make node` (installs runc, CNI plugins, iptables)"
            );
        }
        let data_dir = repo_root().join("target/test-clusters").join(pwreset_testkit::unique_name("node"));
        std::fs::create_dir_all(&data_dir).unwrap();
        let kubeconfig = data_dir.join("cp/admin.kubeconfig");
        let port = pwreset_testkit::process::free_port().to_string();
        let cp_dir = data_dir.join("cp");
        let control_plane = spawn_until_ready(
            "control plane",
            Command::new(&binary)
                .arg("--data-dir")
                .arg(&cp_dir)
                .args(["--port", &port, "--exit-with-parent"])
                .args(["--node-ip", GATEWAY]),
            Duration::from_secs(180),
        );
        let mut cluster =
            NodeCluster { control_plane: Some(control_plane), node: None, data_dir: data_dir.clone(), kubeconfig };
        let node = spawn_until_ready(
            "node",
            Command::new(&binary)
                .arg("node")
                .arg("--data-dir")
                .arg(data_dir.join("node"))
                .arg("--kubeconfig")
                .arg(&cluster.kubeconfig)
                .arg("--bin-dir")
                .arg(&bin_dir)
                .arg("--import")
                .arg(&pause)
                .arg("--import")
                .arg(&operator)
                .arg("--exit-with-parent"),
            Duration::from_secs(180),
        );
        cluster.node = Some(node);
        cluster.install_crds();
        cluster.wait_node_ready(Duration::from_secs(180));
        cluster
    }

    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(tool("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Runs kubectl; Ok(stdout) or Err(stderr).
    pub fn kubectl_try(&self, args: &[&str]) -> Result<String, String> {
        let out = self.kubectl().args(args).output().expect("run kubectl");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl_try(args).unwrap_or_else(|e| panic!("kubectl {} failed: {e}", args.join(" ")))
    }

    pub async fn client(&self) -> kube::Client {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        let kc = Kubeconfig::read_from(&self.kubeconfig).expect("read admin.kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap();
        kube::Client::try_from(config).unwrap()
    }

    fn install_crds(&self) {
        let crds = repo_root().join("crds");
        self.kubectl_ok(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
        self.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=60s", "-f", crds.to_str().unwrap()]);
    }

    fn wait_node_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let jsonpath = r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#;
        loop {
            let last = self.kubectl_try(&["get", "node", NODE_NAME, "-o", jsonpath]);
            if last.as_deref().map(str::trim) == Ok("True") {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "node {NODE_NAME} not Ready after {timeout:?} (last: {last:?}); kubelet log: {}",
                    self.data_dir.join("node/logs/kubelet.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Stops the node (which removes its pods, mounts, cgroups and bridge), then the
    /// control plane; panics if the node left a mount or its bridge behind.
    pub fn stop(&mut self) {
        if let Some(mut node) = self.node.take() {
            pwreset_testkit::process::terminate(&mut node, Duration::from_secs(120));
        }
        if let Some(mut cp) = self.control_plane.take() {
            pwreset_testkit::process::terminate(&mut cp, Duration::from_secs(15));
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let prefix = self.data_dir.to_string_lossy().into_owned();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&prefix)).collect();
        assert!(left.is_empty(), "mounts left behind after the node stopped:\n{}", left.join("\n"));
        assert!(!Path::new("/sys/class/net").join(BRIDGE).exists(), "bridge {BRIDGE} left behind");
        let cgroups: Vec<_> = ["cpu", "memory", "pids"]
            .iter()
            .map(|h| Path::new("/sys/fs/cgroup").join(h).join("kubepods"))
            .filter(|p| p.exists())
            .collect();
        assert!(cgroups.is_empty(), "pod cgroups left behind: {cgroups:?}");
        let links: Vec<_> = std::fs::read_dir("/var/log/containers")
            .map(|d| d.filter_map(Result::ok).filter_map(|e| std::fs::read_link(e.path()).ok()).collect())
            .unwrap_or_default();
        let ours: Vec<_> = links.iter().filter(|t: &&PathBuf| t.starts_with(&self.data_dir)).collect();
        assert!(ours.is_empty(), "container log links left in /var/log/containers: {ours:?}");
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        // After a panic, still stop everything; the assertions only matter on success.
        if std::thread::panicking() {
            if let Some(mut node) = self.node.take() {
                pwreset_testkit::process::terminate(&mut node, Duration::from_secs(120));
            }
            if let Some(mut cp) = self.control_plane.take() {
                pwreset_testkit::process::terminate(&mut cp, Duration::from_secs(15));
            }
        } else {
            self.stop();
        }
    }
}

/// Spawns `cmd` and waits for its `ready` line; its stderr goes to the test's output.
fn spawn_until_ready(what: &str, cmd: &mut Command, timeout: Duration) -> Child {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the {what}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.trim() == "ready" {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(timeout).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the {what} did not print `ready` within {timeout:?}");
    }
    child
}

/// The Graph emulator as a host process listening on the bridge address, where pods
/// reach it.
pub struct HostEmulator {
    child: Child,
    pub url: String,
}

impl HostEmulator {
    pub fn start() -> HostEmulator {
        let mut child = Command::new(pwreset_testkit::binary("graph-emulator"))
            // The admin API is called from the host, but not over loopback.
            .args(["--listen", &format!("{GATEWAY}:0"), "--allow-remote-admin"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start graph-emulator");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(20)).expect("graph-emulator did not print `listening on`");
        HostEmulator { child, url }
    }

    pub async fn admin(&self, path: &str, body: serde_json::Value) {
        let resp =
            reqwest::Client::new().post(format!("{}/_emulator{path}", self.url)).json(&body).send().await.unwrap();
        assert!(resp.status().is_success(), "emulator POST {path}: {}", resp.status());
    }
}

impl Drop for HostEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
