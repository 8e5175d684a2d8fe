//! The fuzz driver: checks one property on generated inputs, for a number of inputs (what
//! `cargo test` does) or for a time budget (what `scripts/fuzz` does), and says how many inputs
//! it tried.
//!
//! It drives proptest's `TestRunner` one case at a time rather than through `proptest!`, because
//! `proptest!` can be bounded by a case count only and does not report one. A failing input
//! (a broken property or a panic) is shrunk by proptest and reported with the seed that
//! reproduces it. It runs on stable Rust inside `cargo test`; cargo-fuzz would add a libFuzzer
//! build outside the test suite, and its sanitizers need nightly (this crate has no `unsafe`).
//!
//! Environment:
//! - `HEXFLOW_FUZZ_CASES`: inputs per target (default: the target's CI size, a few seconds);
//! - `HEXFLOW_FUZZ_SECS`: a time budget per target (without `HEXFLOW_FUZZ_CASES`, unbounded
//!   inputs until then);
//! - `HEXFLOW_FUZZ_SEED`: the random seed (default fixed, so CI runs are reproducible).
//!
//! Also compiled into the crate's unit tests (`src/source.rs`) with `#[path]`.

use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// The seed of a CI run.
const DEFAULT_SEED: u64 = 0x6865_7866_6c6f_7721;

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name}={value:?} is not a number")))
}

/// Checks `property` on inputs drawn from `strategy` until the budget is spent; panics with
/// the shrunk failing input and the seed on the first failure.
pub fn fuzz<S: Strategy>(
    target: &str,
    ci_cases: u64,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let secs: Option<u64> = env_number("HEXFLOW_FUZZ_SECS");
    let default_cases = if secs.is_some() { u64::MAX } else { ci_cases };
    let cases: u64 = env_number("HEXFLOW_FUZZ_CASES").unwrap_or(default_cases);
    let seed: u64 = env_number("HEXFLOW_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let deadline = secs.map(|s| Instant::now() + Duration::from_secs(s));
    // Failures become named regression tests, not files proptest would write next to the source.
    let config = Config { failure_persistence: None, max_shrink_time: 60_000, ..Config::default() };
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let start = Instant::now();
    let mut tried = 0u64;
    while tried < cases && deadline.is_none_or(|d| Instant::now() < d) {
        let input = strategy.new_tree(&mut runner).unwrap_or_else(|e| panic!("fuzz {target}: generating: {e}"));
        tried += 1;
        if let Err(e) = runner.run_one(input, &property) {
            panic!("fuzz {target}: input {tried} failed (HEXFLOW_FUZZ_SEED={seed}): {e}");
        }
    }
    println!("fuzz {target}: {tried} inputs tried in {:.1}s (seed {seed})", start.elapsed().as_secs_f64());
}
