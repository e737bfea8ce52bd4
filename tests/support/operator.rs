//! The operator binary as a real process: the exact thing users run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ControlPlane;

pub struct Operator {
    child: Option<Child>,
    log: PathBuf,
    pub metrics_addr: String,
}

impl Operator {
    /// Starts `pwreset-operator run` against `cp` with `args` (flags after `run`).
    /// Logs are JSON and kept in a file so tests can read them (e.g. scan for secrets).
    pub fn start(cp: &ControlPlane, args: &[&str]) -> Operator {
        Self::start_with_env(cp, args, &[])
    }

    pub fn start_with_env(cp: &ControlPlane, args: &[&str], env: &[(&str, &str)]) -> Operator {
        let metrics_port = free_port();
        let metrics_addr = format!("127.0.0.1:{metrics_port}");
        let log = cp.data_dir().join(format!("{}.log", super::unique_name("operator")));
        let log_file = std::fs::File::create(&log).expect("create operator log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pwreset-operator"));
        cmd.arg("run")
            .arg("--metrics-addr")
            .arg(&metrics_addr)
            .arg("--log-format")
            .arg("json")
            .args(args)
            .env("KUBECONFIG", cp.kubeconfig())
            .env("RUST_LOG", "info,pwreset_operator=debug")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start pwreset-operator");
        Operator { child: Some(child), log, metrics_addr }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path on the operator's metrics/health server.
    pub async fn http_get(&self, path: &str) -> Result<(u16, String), String> {
        let url = format!("http://{}{path}", self.metrics_addr);
        let resp = reqwest::get(&url).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(|e| e.to_string())?))
    }

    /// Waits until `/readyz` answers 200 (caches synced).
    pub async fn wait_ready(&self) {
        super::eventually("operator /readyz", Duration::from_secs(60), || async {
            match self.http_get("/readyz").await {
                Ok((200, _)) => Ok(()),
                other => Err(format!("{other:?}; logs:\n{}", self.logs())),
            }
        })
        .await
    }

    /// One sample of a Prometheus metric (exact label set), if present.
    pub async fn metric(&self, name_and_labels: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics").await.ok()?;
        parse_metric(&body, name_and_labels)
    }

    /// SIGKILL: the crash case, no clean-up at all.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        terminate(&mut child, Duration::from_secs(20))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn parse_metric(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        (key == name_and_labels).then(|| value.parse().ok()).flatten()
    })
}

/// SIGTERM, wait up to `timeout`, then SIGKILL.
pub fn terminate(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    // SAFETY: plain kill(2) on a pid we own and have not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait().ok()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}
