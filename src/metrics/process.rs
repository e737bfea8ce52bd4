//! The process's own memory, CPU and open files, read from /proc at scrape time under the
//! names Prometheus' client libraries use, so users need no separate exporter.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug)]
pub(super) struct ProcessCollector;

/// What /proc says about this process; None where it cannot be read (not Linux).
#[derive(Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

/// Clock ticks per second of /proc/self/stat's CPU times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

pub fn read() -> ProcessStats {
    let page = 4096.0;
    let resident_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|pages| pages * page);
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |n: usize| fields.get(n).and_then(|v| v.parse::<f64>().ok());
    // rest[0] is field 3 (state): utime is field 14, stime 15, starttime 22.
    let cpu_seconds = field(11).zip(field(12)).map(|(u, s)| (u + s) / TICKS);
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok()));
    let start_time_seconds = field(19).zip(boot_time).map(|(start, boot)| boot + start / TICKS);
    let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as f64);
    ProcessStats { resident_bytes, cpu_seconds, open_fds, start_time_seconds }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = read();
        let gauges = [
            ("process_resident_memory_bytes", "Resident memory size in bytes", stats.resident_bytes),
            ("process_open_fds", "Number of open file descriptors", stats.open_fds),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                stats.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                ConstGauge::new(v).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
            }
        }
        if let Some(v) = stats.cpu_seconds {
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(v).encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let stats = super::read();
        assert!(stats.resident_bytes.unwrap() > 1e6, "{stats:?}");
        assert!(stats.open_fds.unwrap() >= 3.0, "{stats:?}");
        assert!(stats.cpu_seconds.unwrap() >= 0.0, "{stats:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let start = stats.start_time_seconds.unwrap();
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0, "{start} vs {now}");
    }
}
