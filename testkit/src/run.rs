//! A short-lived command (e.g. `pwreset-operator login`) as a real process: stdout and
//! stderr collected as they come, waited for with a deadline, killed if it overstays.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::process::{prepare, terminate};

pub struct Captured {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

/// What the process printed and how it ended.
#[derive(Debug)]
pub struct Finished {
    /// None when it was killed at the deadline (or by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

fn collect(mut from: impl std::io::Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

impl Captured {
    /// Starts `cmd` with stdin closed and both outputs captured.
    pub fn spawn(mut cmd: Command) -> Captured {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        prepare(&mut cmd);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let (stdout, stderr) = (Arc::default(), Arc::default());
        collect(child.stdout.take().expect("piped").take(u64::MAX), Arc::clone(&stdout));
        collect(child.stderr.take().expect("piped").take(u64::MAX), Arc::clone(&stderr));
        Captured { child, stdout, stderr }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the exit up to `timeout`; kills the process after that. Output printed
    /// just before the exit is collected too.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the process") {
                break Some(status);
            }
            if started.elapsed() >= timeout {
                terminate(&mut self.child, Duration::from_secs(5));
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader threads see EOF right after the exit.
        std::thread::sleep(Duration::from_millis(100));
        Finished {
            code: status.and_then(|s| s.code()),
            stdout: self.stdout(),
            stderr: self.stderr(),
            took: started.elapsed(),
        }
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
