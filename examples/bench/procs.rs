//! The processes a scenario runs: the control plane, the Graph emulator and the release
//! build of the operator, plus what `/proc` says about them (CPU seconds, peak RSS).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The child is SIGKILLed when the thread that spawned it dies: nothing outlives the bench,
/// however it ends. Children are spawned from the main thread only (the `block_on` thread).
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
}

/// SIGTERM, wait up to `timeout`, then SIGKILL.
fn terminate(child: &mut Child, timeout: Duration) {
    // SAFETY: plain kill(2) on a child we have not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads `child`'s stdout on a thread and hands over the first line `pick` accepts.
fn wait_for_line(
    child: &mut Child,
    timeout: Duration,
    what: &str,
    pick: impl Fn(&str) -> Option<String> + Send + 'static,
) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("piped stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining after the line: a full pipe would block the child.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(v) = pick(&line) {
                let _ = tx.send(v);
            }
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(v) => Ok(v),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not start within {timeout:?}")
        }
    }
}

/// A fresh kube-apiserver + etcd + kube-controller-manager (`make control-plane`).
pub struct ControlPlane {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub kubeconfig: PathBuf,
    keep: bool,
}

impl ControlPlane {
    pub fn start(binary: &Path, data_dir: &Path, log: &Path, keep: bool) -> anyhow::Result<ControlPlane> {
        if data_dir.exists() {
            std::fs::remove_dir_all(data_dir).with_context(|| format!("removing {}", data_dir.display()))?;
        }
        std::fs::create_dir_all(data_dir)?;
        let log = File::create(log)?;
        let mut cmd = Command::new(binary);
        cmd.arg("--data-dir").arg(data_dir).arg("--exit-with-parent");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        wait_for_line(&mut child, Duration::from_secs(180), "the control plane", |l| {
            (l.trim() == "ready").then(String::new)
        })?;
        Ok(ControlPlane {
            child: Some(child),
            kubeconfig: data_dir.join("admin.kubeconfig"),
            data_dir: data_dir.to_path_buf(),
            keep,
        })
    }

    /// The supervisor and its children (kube-apiserver, kube-controller-manager); etcd runs
    /// inside the supervisor.
    pub fn pids(&self) -> Vec<u32> {
        let Some(child) = &self.child else { return Vec::new() };
        let mut pids = vec![child.id()];
        pids.extend(children_of(child.id()));
        pids
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(20));
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `graph-emulator` (release build), throttling off (no tenant has a budget).
pub struct Emulator {
    child: Child,
    pub url: String,
}

impl Emulator {
    pub fn start(binary: &Path, log: &Path) -> anyhow::Result<Emulator> {
        let log = File::create(log)?;
        let mut cmd = Command::new(binary);
        cmd.args(["--listen", "127.0.0.1:0", "--log-format", "json"]).env("RUST_LOG", "warn");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let url = wait_for_line(&mut child, Duration::from_secs(20), "graph-emulator", |l| {
            l.strip_prefix("listening on ").map(|u| u.trim().to_string())
        })?;
        Ok(Emulator { child, url })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// `target/release/pwreset-operator run ...`.
pub struct Operator {
    child: Option<Child>,
    pub pid: u32,
    pub metrics_url: String,
    pub log: PathBuf,
    /// When it was spawned.
    pub started: Instant,
}

pub struct OperatorArgs<'a> {
    pub binary: &'a Path,
    pub kubeconfig: &'a Path,
    pub graph_url: &'a str,
    pub poll_interval: Duration,
    pub extra: &'a [String],
    pub env: &'a [(String, String)],
    pub log: &'a Path,
}

impl Operator {
    pub fn start(a: &OperatorArgs<'_>) -> anyhow::Result<Operator> {
        let port = free_port()?;
        let metrics_addr = format!("127.0.0.1:{port}");
        let log = File::create(a.log)?;
        let mut cmd = Command::new(a.binary);
        cmd.arg("run")
            .args(["--graph-url", a.graph_url])
            .args(["--poll-interval", &format!("{}ms", a.poll_interval.as_millis())])
            // The client-side limit must not be what is measured.
            .args(["--tenant-rate", "100000", "--tenant-burst", "100000"])
            .args(["--log-format", "json"])
            .args(["--metrics-addr", &metrics_addr])
            .args(a.extra)
            .env("KUBECONFIG", a.kubeconfig)
            .env("RUST_LOG", "warn")
            .envs(a.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_parent(&mut cmd);
        let started = Instant::now();
        let child = cmd.spawn().with_context(|| format!("starting {}", a.binary.display()))?;
        Ok(Operator {
            pid: child.id(),
            child: Some(child),
            metrics_url: format!("http://{metrics_addr}"),
            log: a.log.to_path_buf(),
            started,
        })
    }

    /// None while it runs; its exit status once it has stopped.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM and wait (it finishes in-flight reconciles first).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(30));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).ok().and_then(|s| stat_fields(&s)).map(|f| f.ppid)
                == Some(pid)
        })
        .collect()
}

struct StatFields {
    ppid: u32,
    ticks: u64,
}

/// Fields of /proc/PID/stat after the command name (which may contain spaces).
fn stat_fields(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    Some(StatFields {
        ppid: f.get(1)?.parse().ok()?,
        ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    })
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat_fields(&stat)?.ticks as f64 / clock_ticks())
}

/// CPU seconds all cores were busy since boot (user, nice, system, irq, softirq, steal).
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7).copied().unwrap_or(0);
    Some(busy as f64 / clock_ticks())
}

/// (VmRSS, VmHWM) in KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// One sample of every process in a scenario.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    /// Seconds since the operator was spawned.
    pub t: f64,
    pub operator_cpu: f64,
    pub operator_rss_kib: u64,
    pub control_plane_cpu: f64,
    pub emulator_cpu: f64,
    pub bench_cpu: f64,
    /// CPU seconds the whole machine was busy (all processes, /proc/stat).
    pub machine_cpu: f64,
}

/// Samples CPU and memory every second on a thread of its own.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    pub fn start(operator: u32, started: Instant, control_plane: Vec<u32>, emulator: u32) -> Sampler {
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let stop: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (s, st) = (samples.clone(), stop.clone());
        let me = std::process::id();
        let thread = std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                let sample = Sample {
                    t: started.elapsed().as_secs_f64(),
                    operator_cpu: cpu_seconds(operator).unwrap_or(f64::NAN),
                    operator_rss_kib: memory_kib(operator).map(|m| m.0).unwrap_or(0),
                    control_plane_cpu: control_plane.iter().filter_map(|p| cpu_seconds(*p)).sum(),
                    emulator_cpu: cpu_seconds(emulator).unwrap_or(f64::NAN),
                    bench_cpu: cpu_seconds(me).unwrap_or(f64::NAN),
                    machine_cpu: machine_busy_seconds().unwrap_or(f64::NAN),
                };
                s.lock().unwrap().push(sample);
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Sampler { samples, stop, thread: Some(thread) }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.samples()
    }
}

/// Average cores used by each process between two samples.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Load {
    pub operator: f64,
    pub control_plane: f64,
    pub emulator: f64,
    pub bench: f64,
    /// Everything else running on the machine meanwhile (e.g. builds).
    pub other: f64,
}

pub fn load_between(a: &Sample, b: &Sample) -> Load {
    let dt = (b.t - a.t).max(1e-9);
    let operator = (b.operator_cpu - a.operator_cpu) / dt;
    let control_plane = (b.control_plane_cpu - a.control_plane_cpu) / dt;
    let emulator = (b.emulator_cpu - a.emulator_cpu) / dt;
    let bench = (b.bench_cpu - a.bench_cpu) / dt;
    let machine = (b.machine_cpu - a.machine_cpu) / dt;
    let other = (machine - operator - control_plane - emulator - bench).max(0.0);
    Load { operator, control_plane, emulator, bench, other }
}

/// The highest operator CPU (cores) over any `window` seconds.
pub fn peak_operator_cores(samples: &[Sample], window: f64) -> f64 {
    let mut best = 0.0f64;
    for (i, a) in samples.iter().enumerate() {
        if let Some(b) = samples[i..].iter().find(|b| b.t - a.t >= window) {
            best = best.max(load_between(a, b).operator);
        }
    }
    best
}
