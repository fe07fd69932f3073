//! The trading runner: configuration, the worker supervisor, the strategy and the main job.
#![forbid(unsafe_code)]

pub mod config;
pub mod job;
pub mod soak;
pub mod strategy;
pub mod supervisor;

/// Parses the test-only fault knobs of the simulated market from `RUNNER_SIM_FAULTS`:
/// comma-separated `key=value` pairs (`accounts_delay_ms`, `accounts_never`, `reply_delay_ms`,
/// `crash_after_batches`, `hang_after_batches`, `no_data=SYM1+SYM2`).
pub fn sim_faults(text: &str) -> Result<worker::SimFaults, String> {
    let mut f = worker::SimFaults::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, "true"));
        let num = || {
            v.parse::<u64>()
                .map_err(|_| format!("RUNNER_SIM_FAULTS: {k} needs a number, got {v:?}"))
        };
        match k {
            "accounts_delay_ms" => f.accounts_delay_ms = num()?,
            "accounts_never" => f.accounts_never = v == "true",
            "reply_delay_ms" => f.reply_delay_ms = num()?,
            "crash_after_batches" => f.crash_after_batches = Some(num()?),
            "hang_after_batches" => f.hang_after_batches = Some(num()?),
            "no_data" => f.no_data = v.split('+').map(String::from).collect(),
            other => return Err(format!("RUNNER_SIM_FAULTS: unknown fault {other:?}")),
        }
    }
    Ok(f)
}
