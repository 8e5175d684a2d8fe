//! A small Prometheus registry: counters, gauges and histograms rendered in the text format.

use std::{
    fmt::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
};

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Adds `d` (may be negative).
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct HistogramInner {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// A distribution of observations (seconds, rows, ...) over fixed buckets.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramInner>);

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, v: f64) {
        let h = &self.0;
        if let Some(i) = h.bounds.iter().position(|b| v <= *b) {
            h.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        h.sum_micros.fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        h.count.fetch_add(1, Ordering::Relaxed);
    }
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
enum Value {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

#[derive(Debug)]
struct Entry {
    name: String,
    help: String,
    labels: String,
    value: Value,
}

/// The registry a service exposes at `/metrics`. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    entries: Arc<Mutex<Vec<Entry>>>,
}

/// Default buckets for durations in seconds.
pub const SECONDS_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

impl Metrics {
    fn register(&self, name: &str, help: &str, labels: &[(&str, &str)], value: Value) {
        let labels =
            labels.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "'"))).collect::<Vec<_>>().join(",");
        let mut entries = self.entries.lock().expect("metrics lock is never poisoned: no panics while held");
        entries.push(Entry { name: name.into(), help: help.into(), labels, value });
    }

    /// A new counter.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.counter_with(name, help, &[])
    }

    /// A new counter with fixed labels.
    pub fn counter_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        let c = Counter::default();
        self.register(name, help, labels, Value::Counter(c.clone()));
        c
    }

    /// A new gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        let g = Gauge::default();
        self.register(name, help, &[], Value::Gauge(g.clone()));
        g
    }

    /// A new histogram with the given upper bounds.
    pub fn histogram(&self, name: &str, help: &str, bounds: &[f64]) -> Histogram {
        let h = Histogram(Arc::new(HistogramInner {
            bounds: bounds.to_vec(),
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }));
        self.register(name, help, &[], Value::Histogram(h.clone()));
        h
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let entries = self.entries.lock().expect("metrics lock is never poisoned: no panics while held");
        let mut out = String::new();
        let mut last_name = "";
        for e in entries.iter() {
            let kind = match e.value {
                Value::Counter(_) => "counter",
                Value::Gauge(_) => "gauge",
                Value::Histogram(_) => "histogram",
            };
            if e.name != last_name {
                let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {kind}", e.name, e.help, e.name);
                last_name = &e.name;
            }
            let braces = |extra: &str| -> String {
                let all =
                    [e.labels.as_str(), extra].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(",");
                if all.is_empty() { String::new() } else { format!("{{{all}}}") }
            };
            match &e.value {
                Value::Counter(c) => {
                    let _ = writeln!(out, "{}{} {}", e.name, braces(""), c.get());
                }
                Value::Gauge(g) => {
                    let _ = writeln!(out, "{}{} {}", e.name, braces(""), g.get());
                }
                Value::Histogram(h) => {
                    let mut cumulative = 0;
                    for (b, c) in h.0.bounds.iter().zip(&h.0.counts) {
                        cumulative += c.load(Ordering::Relaxed);
                        let _ = writeln!(out, "{}_bucket{} {cumulative}", e.name, braces(&format!("le=\"{b}\"")));
                    }
                    let _ = writeln!(out, "{}_bucket{} {}", e.name, braces("le=\"+Inf\""), h.count());
                    let _ = writeln!(
                        out,
                        "{}_sum{} {}",
                        e.name,
                        braces(""),
                        h.0.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
                    );
                    let _ = writeln!(out, "{}_count{} {}", e.name, braces(""), h.count());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.counter("hexflow_rows_total", "Rows read").add(5);
        m.gauge("hexflow_jobs_active", "Jobs in hand").set(2);
        m.histogram("hexflow_job_seconds", "Job time", &[1.0, 10.0]).observe(3.0);
        let text = m.render();
        assert!(text.contains("# TYPE hexflow_rows_total counter\nhexflow_rows_total 5\n"), "{text}");
        assert!(text.contains("hexflow_jobs_active 2\n"));
        assert!(text.contains("hexflow_job_seconds_bucket{le=\"1\"} 0\n"));
        assert!(text.contains("hexflow_job_seconds_bucket{le=\"10\"} 1\n"));
        assert!(text.contains("hexflow_job_seconds_count 1\n"));
    }
}
