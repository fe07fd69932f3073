//! Watching and ending the processes a test starts: whether a pid still runs, signals,
//! kill-and-reap, the bridge segments a runner left behind, and polling for a condition. The
//! same on Linux and macOS (through `bridge::platform` and the bridge's own records).
//!
//! Invariants: nothing here needs unsafe code (signals go through the `kill` command, see
//! [`base::signal`]); a zombie counts as dead (it runs no code any more; only its parent
//! has not reaped it yet).

use std::io;
use std::process::Child;
use std::time::{Duration, Instant};

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    bridge::platform::process_alive(pid)
}

/// SIGKILLs `child` and reaps it; returns the moment it was killed. A child that already
/// exited is only reaped.
pub fn kill_and_wait(child: &mut Child) -> io::Result<Instant> {
    child.kill()?;
    let killed = Instant::now();
    child.wait()?;
    Ok(killed)
}

/// Whether the segment named `name` is still there: recorded, or its object still exists
/// (linked, or left behind).
pub fn recorded(name: &str) -> bool {
    let bare = name.trim_start_matches('/');
    bridge::segment::recorded_names().iter().any(|n| n == bare)
        || bridge::segment::exists(&format!("/{bare}"))
}

/// The names of the bridge segments recorded now (`/dev/shm` on Linux, the per-user lock
/// files on macOS) that the runner with pid `pid` created.
pub fn segments_of(pid: u32) -> io::Result<Vec<String>> {
    let prefix = format!("{}{pid}-", bridge::segment::NAME_PREFIX);
    Ok(bridge::segment::recorded_names()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect())
}

/// Polls `f` every 10 ms until it is true or `limit` passes; returns the time it took.
pub fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn this_process_is_alive_and_a_killed_child_is_not() {
        assert!(alive(std::process::id()));
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        assert!(alive(pid));
        let killed = kill_and_wait(&mut child).unwrap();
        assert!(killed.elapsed() < Duration::from_secs(5));
        assert!(!alive(pid));
        // Killing an exited child only reaps it again.
        kill_and_wait(&mut child).unwrap();
    }

    #[test]
    fn a_stopped_child_is_alive_until_killed() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        base::signal::send(child.id(), base::signal::ProcessSignal::Stop).unwrap();
        assert!(alive(child.id()));
        let pid = child.id();
        kill_and_wait(&mut child).unwrap();
        assert!(!alive(pid));
    }

    #[test]
    fn within_reports_how_long_a_condition_took_or_none() {
        let start = Instant::now();
        let took = within(Duration::from_secs(5), || {
            start.elapsed() >= Duration::from_millis(30)
        })
        .unwrap();
        assert!(took >= Duration::from_millis(30));
        assert_eq!(within(Duration::from_millis(30), || false), None);
    }

    #[test]
    fn segments_are_named_after_their_runner() {
        // No runner has this pid's prefix (pids are below 2^22 on Linux).
        assert_eq!(segments_of(u32::MAX).unwrap(), Vec::<String>::new());
        let seg = bridge::segment::Segment::create(Default::default(), 1).unwrap();
        let bare = seg.name().trim_start_matches('/').to_string();
        assert_eq!(segments_of(std::process::id()).unwrap(), vec![bare]);
        assert!(recorded(seg.name()));
        let name = seg.name().to_string();
        drop(seg);
        assert!(!recorded(&name));
        assert_eq!(
            segments_of(std::process::id()).unwrap(),
            Vec::<String>::new()
        );
    }
}
