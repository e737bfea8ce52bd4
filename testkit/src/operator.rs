//! The operator binary as a real process: the exact thing users run.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::ControlPlane;
use crate::process::{free_port, prepare, terminate};

/// How to start `pwreset-operator run`; the metrics address is always a free local port and
/// logs are always JSON, in a file, so they can be read back (e.g. scanned for secrets).
#[derive(Debug, Clone)]
pub struct Options {
    /// `pwreset-operator` of the running build profile when None.
    pub binary: Option<PathBuf>,
    pub kubeconfig: PathBuf,
    /// Flags after `run`.
    pub args: Vec<String>,
    /// Environment, applied after `RUST_LOG` (so it can override it).
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    pub rust_log: String,
}

impl Options {
    /// The built binary against `cp` with `args` (flags after `run`), logging at debug.
    pub fn new(cp: &ControlPlane, args: &[&str]) -> Options {
        Options {
            binary: None,
            kubeconfig: cp.kubeconfig().to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            log: cp.data_dir().join(format!("{}.log", crate::unique_name("operator"))),
            rust_log: "info,pwreset_operator=debug".into(),
        }
    }
}

pub struct Operator {
    child: Mutex<Option<Child>>,
    log: PathBuf,
    pub pid: u32,
    pub metrics_addr: String,
    /// When it was spawned.
    pub started: Instant,
}

impl Operator {
    /// Starts `pwreset-operator run` against `cp` with `args` (flags after `run`).
    pub fn start(cp: &ControlPlane, args: &[&str]) -> Operator {
        Self::start_with_env(cp, args, &[])
    }

    pub fn start_with_env(cp: &ControlPlane, args: &[&str], env: &[(&str, &str)]) -> Operator {
        let mut options = Options::new(cp, args);
        options.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::start_with(options).unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn start_with(o: Options) -> anyhow::Result<Operator> {
        let binary = o.binary.unwrap_or_else(|| crate::binary("pwreset-operator"));
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let log_file = File::create(&o.log).with_context(|| format!("creating {}", o.log.display()))?;
        let mut cmd = Command::new(&binary);
        cmd.arg("run")
            .args(["--metrics-addr", &metrics_addr, "--log-format", "json"])
            .args(&o.args)
            .env("KUBECONFIG", &o.kubeconfig)
            .env("RUST_LOG", &o.rust_log)
            .envs(o.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        prepare(&mut cmd);
        let started = Instant::now();
        let child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        Ok(Operator { pid: child.id(), child: Mutex::new(Some(child)), log: o.log, metrics_addr, started })
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.logs();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `http://ADDR` of the metrics/health server.
    pub fn metrics_url(&self) -> String {
        format!("http://{}", self.metrics_addr)
    }

    /// GET a path on the operator's metrics/health server.
    pub async fn http_get(&self, path: &str) -> Result<(u16, String), String> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
        let resp = client.get(format!("{}{path}", self.metrics_url())).send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.map_err(|e| e.to_string())?))
    }

    /// None while it runs; its exit status once it has stopped.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits until `/readyz` answers 200 (caches synced); panics after 60 s.
    pub async fn wait_ready(&self) {
        if let Err(e) = self.wait_ready_within(Duration::from_secs(60)).await {
            panic!("{e}; logs:\n{}", self.logs());
        }
    }

    /// Waits up to `timeout` until `/readyz` answers 200 and returns how long after its start
    /// that was; fails at once if the operator exits meanwhile.
    pub async fn wait_ready_within(&self, timeout: Duration) -> Result<Duration, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Err(format!("the operator exited ({status}) before it was ready"));
            }
            let last = match self.http_get("/readyz").await {
                Ok((200, _)) => return Ok(self.started.elapsed()),
                other => other,
            };
            if Instant::now() > deadline {
                return Err(format!("the operator was not ready within {timeout:?}: /readyz said {last:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One sample of a Prometheus metric (exact label set), if present.
    pub async fn metric(&self, name_and_labels: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics").await.ok()?;
        parse_metric(&body, name_and_labels)
    }

    /// SIGKILL: the crash case, no clean-up at all.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit (it finishes in-flight reconciles first); returns
    /// the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap().take()?;
        terminate(&mut child, Duration::from_secs(30))
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
