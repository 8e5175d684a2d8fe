//! Memory of the services while they work: `VmRSS` sampled from `/proc/<pid>/status` every
//! 100 ms, and `VmHWM` (the kernel's own peak) at the end.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde::Serialize;

/// Memory figures of one process, in KiB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Peak {
    /// Largest `VmRSS` sampled.
    pub max_rss_kib: u64,
    /// `VmHWM` when sampling stopped (peak resident set over the process's whole life).
    pub hwm_kib: u64,
    /// Samples taken.
    pub samples: u64,
}

impl Peak {
    /// The figures of several processes added up (each one's own peak: an upper bound of their
    /// peak together).
    pub fn sum(peaks: &[Peak]) -> Peak {
        Peak {
            max_rss_kib: peaks.iter().map(|p| p.max_rss_kib).sum(),
            hwm_kib: peaks.iter().map(|p| p.hwm_kib).sum(),
            samples: peaks.iter().map(|p| p.samples).max().unwrap_or_default(),
        }
    }

    /// Largest sampled RSS in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }

    /// `VmHWM` in MiB.
    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

/// Reads `VmRSS` and `VmHWM` (KiB) of a process; `None` once it is gone.
fn read_status(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// `VmRSS` and `VmHWM` (KiB) of a process right now; `None` once it is gone.
pub fn now(pid: u32) -> Option<(u64, u64)> {
    read_status(pid)
}

/// Samples a set of processes in the background until [`Sampler::finish`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Peak>>,
}

impl Sampler {
    /// Starts sampling `pids` every 100 ms.
    pub fn start(pids: Vec<u32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut peaks = vec![Peak::default(); pids.len()];
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let last = flag.load(Ordering::Relaxed);
                for (pid, peak) in pids.iter().zip(peaks.iter_mut()) {
                    if let Some((rss, hwm)) = read_status(*pid) {
                        peak.max_rss_kib = peak.max_rss_kib.max(rss);
                        peak.hwm_kib = hwm;
                        peak.samples += 1;
                    }
                }
                if last {
                    return peaks;
                }
            }
        });
        Sampler { stop, task }
    }

    /// Takes a last sample and returns the figures, in the order the pids were given.
    pub async fn finish(self) -> anyhow::Result<Vec<Peak>> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}
