//! Signals to processes, without unsafe code: the `kill` command does the system call. Used
//! for the simulated market's injected crash and hang, the soak's chaos, and the tests.
//!
//! Invariants: a signal is sent to exactly one pid (never a group); success means `kill`
//! ran and reported success, anything else is an error naming the signal and the pid.

use std::fmt;
use std::io;
use std::process::Command;

/// The signals sent to processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessSignal {
    /// SIGKILL: the process dies at once.
    Kill,
    /// SIGSTOP: the process hangs until SIGCONT.
    Stop,
    /// SIGCONT: a stopped process goes on.
    Continue,
    /// SIGTERM: the process is asked to end.
    Terminate,
}

impl ProcessSignal {
    /// The option of `kill` that sends it.
    pub fn flag(self) -> &'static str {
        match self {
            ProcessSignal::Kill => "-KILL",
            ProcessSignal::Stop => "-STOP",
            ProcessSignal::Continue => "-CONT",
            ProcessSignal::Terminate => "-TERM",
        }
    }
}

impl fmt::Display for ProcessSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flag())
    }
}

/// Sends `signal` to process `pid`.
pub fn send(pid: u32, signal: ProcessSignal) -> io::Result<()> {
    let status = Command::new("kill")
        .arg(signal.flag())
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("kill {signal} {pid}: {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_then_killed_child_ends_by_sigkill() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        send(child.id(), ProcessSignal::Stop).unwrap();
        send(child.id(), ProcessSignal::Kill).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(9));
    }

    #[test]
    fn a_signal_to_no_process_is_an_error() {
        // Above Linux's largest pid (2^22).
        let e = send(u32::MAX / 2, ProcessSignal::Kill).unwrap_err();
        assert!(e.to_string().starts_with("kill -KILL "), "{e}");
    }
}
