//! Benchmark harness behind `switchyard-bench`: a lean mock provider, a bare hyper forwarder
//! (the practical floor for one proxy hop), a load generator with closed- and open-loop modes,
//! the arms under test run as child processes, the scenarios, and the report.
//!
//! Method (see `../shared/reference/performance.md` §5): "added latency" at a percentile is
//! pX(client → arm → mock) − pX(client → mock), taken per round from interleaved short blocks
//! measured by the same client code against the same mock process, then the median across
//! rounds is reported.

pub mod arms;
pub mod forwarder;
pub mod loadgen;
pub mod mock;
pub mod outage;
pub mod procs;
pub mod report;
pub mod scenarios;
pub mod stats;

/// One progress line on stderr, prefixed with the time since the run started.
pub fn progress(message: &str) {
    use std::io::Write as _;
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let elapsed = START.get_or_init(std::time::Instant::now).elapsed();
    let _ = writeln!(
        std::io::stderr(),
        "[bench {:>6.1}s] {message}",
        elapsed.as_secs_f64()
    );
}
