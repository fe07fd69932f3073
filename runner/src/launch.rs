//! How a command of the `runner` binary starts and ends: its configuration and logging
//! ([`start`], [`init_logging`]), the stop flag of Ctrl-C and SIGTERM ([`stop_flag`]), the
//! workers of its run as this very program ([`with_workers`]), and its exit: one line on
//! stderr ([`fail`], [`one_line`]) and the code ([`EXIT_CONFIG`], [`EXIT_FAILED`],
//! [`exit_code_of`]).
//!
//! Invariants: a command's workers are set up in one way for every command ([`prepare`]),
//! and its journal lives until the command's body returned; what the operator must fix in
//! the configuration or the machine exits with [`EXIT_CONFIG`], any other failure with
//! [`EXIT_FAILED`]; an error is printed as one line, each cause once.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::supervisor::SupervisorError;
use crate::trader::LiveAccountRefused;
use crate::worker_setup::{prepare, PreparedRun, SetupError, WorkerProgram, WorkerSetup};

/// Exit code of a configuration error (one line on stderr names it).
pub const EXIT_CONFIG: u8 = 2;
/// Exit code of a run that could not proceed, or of a soak that failed.
pub const EXIT_FAILED: u8 = 1;

/// Logs to stderr, filtered by `RUNNER_LOG` (default `info`).
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let spec = std::env::var("RUNNER_LOG").unwrap_or_else(|_| "info".into());
    let filter: tracing_subscriber::filter::Targets = spec.parse().unwrap_or_else(|_| {
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
    });
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_filter(filter),
        )
        // The dashboard's warnings, while one runs.
        .with(
            crate::dashboard::WarningLayer
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .try_init();
}

/// Test-only faults of the simulated market (`RUNNER_SIM_FAULTS`); the worker's type reads
/// its own text.
pub fn sim_faults() -> Result<worker::SimFaults, String> {
    match std::env::var("RUNNER_SIM_FAULTS") {
        Ok(text) => text
            .parse::<worker::SimFaults>()
            .map_err(|e| format!("RUNNER_SIM_FAULTS: {e}")),
        Err(_) => Ok(worker::SimFaults::default()),
    }
}

/// A command's configuration (`loaded`) and the simulated market's faults, with logging
/// started; a problem with either is printed and gives [`EXIT_CONFIG`].
pub fn start(loaded: Result<Config, ConfigError>) -> Result<(Config, worker::SimFaults), ExitCode> {
    let cfg = loaded.map_err(|e| fail(EXIT_CONFIG, e))?;
    let faults = sim_faults().map_err(|e| fail(EXIT_CONFIG, e))?;
    init_logging();
    Ok((cfg, faults))
}

/// A flag set by Ctrl-C or SIGTERM.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(stop)
}

/// Runs `body` with the stop flag and the setup of the run's workers, which are this very
/// program ([`WorkerProgram::this_program`]) with `cfg` and `faults`; the run's journal lives
/// until `body` returns. A journal that cannot be used is the machine's problem
/// ([`SupervisorError::Environment`]), like a bridge it cannot host.
pub fn with_workers<T>(
    cfg: &mut Config,
    faults: worker::SimFaults,
    body: impl FnOnce(&Config, WorkerSetup, &AtomicBool) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    with_workers_telling(cfg, faults, |e| SupervisorError::from(e).into(), body)
}

/// [`with_workers`], with `told` making the error of a set-up that failed (the orders by hand
/// tell a journal that cannot be used as the configuration problem it is, not as a worker
/// that could not start).
pub fn with_workers_telling<T>(
    cfg: &mut Config,
    faults: worker::SimFaults,
    told: impl FnOnce(SetupError) -> anyhow::Error,
    body: impl FnOnce(&Config, WorkerSetup, &AtomicBool) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let stop = stop_flag()?;
    let program = WorkerProgram::this_program()?;
    let PreparedRun { setup, journal } = prepare(cfg, program, faults).map_err(told)?;
    let done = body(cfg, setup, &stop);
    drop(journal);
    done
}

/// Exit code of a failed command: a configuration error's for what the operator must fix in
/// the configuration or the machine, else [`EXIT_FAILED`].
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    let environment = matches!(
        e.downcast_ref::<SupervisorError>(),
        Some(SupervisorError::Environment(_))
    );
    let refused = e.downcast_ref::<LiveAccountRefused>().is_some();
    if environment || refused || e.downcast_ref::<worker::JournalError>().is_some() {
        EXIT_CONFIG
    } else {
        EXIT_FAILED
    }
}

/// `e` and its causes in one line, each cause once: a cause whose text the line already holds
/// (an error that says its cause) is not repeated.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// Prints `error: {why}` and gives `code`.
pub fn fail(code: u8, why: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {why}");
    ExitCode::from(code)
}

/// A command's failure: `error: ...` with its causes, and its exit code.
pub fn failed(e: &anyhow::Error) -> ExitCode {
    fail(exit_code_of(e), one_line(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let journal = crate::worker_setup::JournalError::NotAJournal {
            path: "x.journal".into(),
        };
        let said = journal.to_string();
        let e = anyhow::Error::new(SupervisorError::from(
            crate::worker_setup::SetupError::Journal(journal),
        ));
        assert_eq!(one_line(&e), format!("cannot start the worker: {said}"));
        assert_eq!(exit_code_of(&e), EXIT_CONFIG);
        let io = std::io::Error::other("disk full");
        let e = anyhow::Error::new(io).context("cannot write signals file");
        assert_eq!(one_line(&e), "cannot write signals file: disk full");
    }
}
