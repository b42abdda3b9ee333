//! Running seeds: one seed, a replay of a failed one with its trace, many
//! seeds with their summary, and the environment that chooses
//! (`KVMD_SIM_SEED`, `KVMD_SIM_SEEDS`, `KVMD_SIM_STEPS`).

use super::*;

pub(super) struct Failure {
    pub(super) seed: u64,
    pub(super) step: u64,
    pub(super) message: String,
}

pub(super) fn run_seed(seed: u64, steps: u64, echo: bool, strict: bool) -> Result<Stats, Failure> {
    let mut sim = Simulation::new(seed, echo, echo, strict);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| sim.run(steps)));
    if let Err(payload) = outcome {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned());
        return Err(Failure {
            seed,
            step: sim.step,
            message: format!("panicked: {message}"),
        });
    }
    match sim.failure.take() {
        Some(message) => Err(Failure {
            seed,
            step: sim.step,
            message,
        }),
        None => Ok(sim.stats),
    }
}

/// Runs `seed` again with the trace on, and returns its last steps.
pub(super) fn replay_trace(seed: u64, steps: u64, strict: bool) -> String {
    let mut sim = Simulation::new(seed, true, false, strict);
    let _ = panic::catch_unwind(AssertUnwindSafe(|| sim.run(steps)));
    let mut out = String::new();
    for (step, line) in &sim.trace {
        let _ = writeln!(out, "[{step:>5}] {line}");
    }
    out
}

pub(super) fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: not a number")),
    )
}

pub(super) fn run_many(seeds: impl Iterator<Item = u64>, steps: u64, strict: bool) -> Stats {
    let started = Instant::now();
    let mut total = Stats::default();
    for seed in seeds {
        match run_seed(seed, steps, false, strict) {
            Ok(stats) => total.add(&stats),
            Err(f) => {
                let trace = replay_trace(f.seed, steps, strict);
                let strict = if strict { "KVMD_SIM_STRICT=1 " } else { "" };
                panic!(
                    "simulation failed: seed {} step {}: {}\n\
                     replay: {strict}KVMD_SIM_SEED={} KVMD_SIM_STEPS={steps} \
                     cargo test --test simulation -- --nocapture\n\
                     last {TRACE_STEPS} steps:\n{trace}",
                    f.seed, f.step, f.message, f.seed
                );
            }
        }
    }
    report(&total, started.elapsed());
    total
}

/// One seed with its trace (`KVMD_SIM_SEED`), or every seed.
pub(super) fn simulate(strict: bool) {
    let steps = env_u64("KVMD_SIM_STEPS").unwrap_or(STEPS);
    if let Some(seed) = env_u64("KVMD_SIM_SEED") {
        match run_seed(seed, steps, true, strict) {
            Ok(stats) => report(&stats, Duration::ZERO),
            Err(f) => panic!("seed {} failed at step {}: {}", f.seed, f.step, f.message),
        }
        return;
    }
    let seeds = env_u64("KVMD_SIM_SEEDS").unwrap_or(SEEDS);
    let total = run_many(0..seeds, steps, strict);
    if seeds >= SEEDS && steps >= STEPS {
        intents_covered(&total);
    }
}
