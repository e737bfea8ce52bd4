//! Child processes: spawning them so nothing outlives the harness, stopping them, reading
//! their first lines, and what `/proc` says about them (CPU seconds, RSS).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

static DIE_WITH_SPAWNING_THREAD: AtomicBool = AtomicBool::new(false);

/// From now on, children started by the harness are SIGKILLed when the thread that spawned
/// them dies, so nothing outlives a process that spawns from one long-lived thread (the
/// bench's `block_on` thread). Tests must not call it: a test's thread ends while the
/// control plane it started is still shared by the other tests.
pub fn kill_children_with_spawning_thread() {
    DIE_WITH_SPAWNING_THREAD.store(true, Ordering::Relaxed);
}

/// Applies [`kill_children_with_spawning_thread`] to `cmd` if it was asked for.
pub fn prepare(cmd: &mut Command) {
    if !DIE_WITH_SPAWNING_THREAD.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
}

/// SIGTERM, wait up to `timeout`, then SIGKILL.
pub fn terminate(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    // SAFETY: plain kill(2) on a pid we own and have not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    wait_up_to(child, timeout)
}

/// Waits up to `timeout` for `child` to end, then SIGKILLs it.
fn wait_up_to(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
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

/// The child ended before printing the line [`wait_for_line`] waited for: a start that can
/// be tried again (e.g. on another port), unlike one that hangs.
#[derive(Debug)]
pub struct ExitedDuringStartup {
    pub what: String,
    pub status: Option<ExitStatus>,
}

impl std::fmt::Display for ExitedDuringStartup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "{} exited during start-up ({status})", self.what),
            None => write!(f, "{} closed its stdout during start-up", self.what),
        }
    }
}

impl std::error::Error for ExitedDuringStartup {}

/// Reads `child`'s stdout on a thread and hands over the first line `pick` accepts; kills
/// the child if none comes within `timeout`. A child that ends first is an
/// [`ExitedDuringStartup`] error, reported at once.
pub fn wait_for_line(
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
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // Its stdout closed: it has ended, or is about to.
            let status = wait_up_to(child, Duration::from_secs(5));
            Err(ExitedDuringStartup { what: what.to_string(), status }.into())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not start within {timeout:?}")
        }
    }
}

/// A local port free right now, below the kernel's ephemeral range. The caller binds it a
/// moment later; a port from `bind(:0)` could meanwhile be taken by any outgoing connection
/// or `:0` listener (the ephemeral range is where those come from), one from below cannot.
pub fn free_port() -> u16 {
    let low = ephemeral_range_start();
    let (first, span) = (10_000u16, low.saturating_sub(10_000).max(1));
    let seed = std::collections::hash_map::RandomState::new();
    for attempt in 0u32..200 {
        let pick = first + (std::hash::BuildHasher::hash_one(&seed, attempt) % u64::from(span)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", pick)).is_ok() {
            return pick;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The first port of the range the kernel draws outgoing connections' and `:0` listeners'
/// ports from (Linux's default when it cannot be read).
fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768)
}

/// Direct children of `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
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

#[cfg(test)]
mod tests {
    /// The promise that keeps a picked port from being taken before its bind: it comes from
    /// below the range the kernel draws outgoing connections and `:0` listeners from.
    #[test]
    fn free_ports_come_from_below_the_ephemeral_range() {
        let low = super::ephemeral_range_start();
        // Control: a `:0` port, what free_port used to hand out, is inside that range.
        let ephemeral = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(ephemeral >= low, "a :0 port ({ephemeral}) below {low}: the check below would prove nothing");
        for _ in 0..50 {
            let port = super::free_port();
            assert!(port < low, "free_port gave {port}, inside the ephemeral range from {low}");
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        }
    }
}
