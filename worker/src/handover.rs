//! What a new worker inherits from the workers of its run before it ([`Handover`]).
//!
//! Three things outlive a worker: the simulated broker's journal, whose times are read on the
//! market clock it starts with, what of that journal's book the runner has heard already (a
//! replacement tells only what changed since), and IB's pacing, which counts the historical
//! requests of a client whichever worker sent them. Whoever starts workers gathers them into one opaque
//! value and hands it to each worker's options ([`WorkerOptions::inherit`]) without knowing
//! which broker is behind it; only the worker reads what is inside.
//!
//! Invariants: inheriting applies to the backend it concerns and leaves every other option as
//! it was; a journal's clock, once claimed, is the clock of every worker started with these
//! options; a journal holding the book of a market of another seed is refused, never adopted.

use std::path::Path;

use crate::options::{BackendOptions, WorkerOptions};
use crate::sim::journal::{claim_clock, JournalClock, JournalError};

/// What a worker inherits from the workers of its run before it: the market clock of the
/// simulated broker's journal, and the historical requests IB's pacing still counts. Empty
/// ([`Handover::default`]) for the first worker of a run without a journal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Handover {
    /// The clock of the simulated broker's journal, if one was claimed.
    clock: Option<JournalClock>,
    /// Historical requests the broker still counts, if they are known.
    paced_history: Option<Vec<(String, u32, u64)>>,
    /// The last market time through which the runner heard every change of the simulated
    /// broker's book ([`Event::BookTold`](bridge::protocol::Event::BookTold)).
    book_told_through: Option<i64>,
}

impl Handover {
    /// The historical requests the broker still counts, whichever worker sent them: symbol,
    /// bar size in seconds, and when each counts from (Unix milliseconds), oldest first.
    pub fn paced_history(requests: Vec<(String, u32, u64)>) -> Handover {
        Handover {
            paced_history: Some(requests),
            ..Handover::default()
        }
    }

    /// The runner heard every change of the simulated broker's book up to market time
    /// `through`: a new worker tells only what changed since.
    pub fn book_told_through(through: i64) -> Handover {
        Handover {
            book_told_through: Some(through),
            ..Handover::default()
        }
    }

    /// The market clock of the simulated broker's journal at `journal`, for workers started
    /// with `options`: the clock the journal starts with, or, for a new journal, the clock of
    /// `options`, written as its first line. A journal kept across runs so holds the clock of
    /// the run that began it, and its times mean the same in every run. Nothing to hand over
    /// for a broker that is not simulated.
    pub fn journal_clock(
        journal: &Path,
        options: &WorkerOptions,
    ) -> Result<Handover, JournalError> {
        let BackendOptions::Sim(sim) = &options.backend else {
            return Ok(Handover::default());
        };
        let proposed = JournalClock {
            start: sim.start.unwrap_or(0),
            anchor_ms: sim.anchor_ms.unwrap_or(0),
            speed: sim.speed,
            seed: sim.seed,
        };
        let clock = claim_clock(journal, proposed)?;
        if clock.seed != sim.seed {
            return Err(JournalError::OtherSeed {
                path: journal.to_path_buf(),
                held: clock.seed,
                ours: sim.seed,
            });
        }
        if clock != proposed {
            tracing::info!(
                file = %journal.display(),
                speed = clock.speed,
                "the simulated market runs on the clock of its orders file"
            );
        }
        Ok(Handover {
            clock: Some(clock),
            ..Handover::default()
        })
    }
}

impl WorkerOptions {
    /// Hands `handover` to the workers started with these options: what it holds replaces
    /// what they would otherwise have (the simulated market's clock, the requests IB's pacing
    /// counts); what it does not hold stays as it was.
    pub fn inherit(&mut self, handover: Handover) {
        if let (Some(clock), BackendOptions::Sim(sim)) = (handover.clock, &mut self.backend) {
            sim.start = Some(clock.start);
            sim.anchor_ms = Some(clock.anchor_ms);
            sim.speed = clock.speed;
        }
        if let (Some(through), BackendOptions::Sim(sim)) =
            (handover.book_told_through, &mut self.backend)
        {
            sim.book_told_through = Some(through);
        }
        // Only IB counts requests across workers: a simulated worker's options stay small.
        if let (Some(paced), BackendOptions::Ibkr(_)) = (handover.paced_history, &self.backend) {
            self.paced_history = paced;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{IbkrOptions, SimOptions};

    fn sim(seed: u64, start: i64) -> WorkerOptions {
        WorkerOptions::new(BackendOptions::Sim(SimOptions {
            seed,
            start: Some(start),
            anchor_ms: Some(1_700_000_000_000),
            speed: 60.0,
            ..SimOptions::default()
        }))
    }

    fn clock_of(o: &WorkerOptions) -> (Option<i64>, Option<u64>, f64) {
        match &o.backend {
            BackendOptions::Sim(s) => (s.start, s.anchor_ms, s.speed),
            _ => panic!("not simulated"),
        }
    }

    #[test]
    fn a_journal_hands_its_first_clock_to_every_later_run_of_its_seed() {
        let path = std::env::temp_dir().join(format!(
            "ibbridge-handover-test-{}-{}",
            std::process::id(),
            base::random::mix(base::unix_time::now().as_nanos() as u64)
        ));
        let first = sim(42, 1_700_000_000);
        let mut later = sim(42, 1_800_000_000);
        later.inherit(Handover::journal_clock(&path, &first).unwrap());
        assert_eq!(clock_of(&later), clock_of(&first));
        let mut again = sim(42, 1_900_000_000);
        again.inherit(Handover::journal_clock(&path, &again.clone()).unwrap());
        assert_eq!(clock_of(&again), clock_of(&first));
        let e = Handover::journal_clock(&path, &sim(7, 1_700_000_000)).unwrap_err();
        assert!(
            matches!(
                e,
                JournalError::OtherSeed {
                    held: 42,
                    ours: 7,
                    ..
                }
            ),
            "{e}"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn paced_history_goes_to_the_options_and_nothing_else_changes() {
        let mut o = WorkerOptions::new(BackendOptions::Ibkr(IbkrOptions::default()));
        let before = o.clone();
        o.inherit(Handover::default());
        assert_eq!(o, before);
        let paced = vec![("SPY".to_string(), 60, 1_000)];
        o.inherit(Handover::paced_history(paced.clone()));
        assert_eq!(o.paced_history, paced);
        assert_eq!(o.backend, before.backend);
        // A journal hands nothing to a broker that is not simulated.
        let ib = Handover::journal_clock(Path::new("/nonexistent/journal"), &o).unwrap();
        assert_eq!(ib, Handover::default());
        // And IB's pacing hands nothing to the simulated market.
        let mut s = sim(42, 1_700_000_000);
        let before = s.clone();
        s.inherit(Handover::paced_history(paced));
        assert_eq!(s, before);
    }
}
