//! CPU and memory of every process in a scenario, sampled once a second from `/proc`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pwreset_testkit::process::{cpu_seconds, machine_busy_seconds, memory_kib};

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
