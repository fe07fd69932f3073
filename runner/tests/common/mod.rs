//! Helpers shared by the runner's integration tests: starting the runner with a clean
//! environment, running it to completion or reading its log as it runs, reading its summary
//! table, files under the build's tmp dir, and the fake TWS gateway.

#![allow(dead_code)] // each test binary uses its own subset

pub(crate) mod http;

use std::borrow::BorrowMut;
use std::io::{BufRead, BufReader, Lines};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Output, Stdio};

use tests::gateway::{Behaviour, Gateway};

/// The runner executable under test.
pub(crate) const RUNNER: &str = env!("CARGO_BIN_EXE_runner");

/// `runner ARGS` with none of the runner's environment variables (and no injected faults)
/// inherited from the test's environment.
pub(crate) fn runner(args: &[&str]) -> Command {
    let mut cmd = Command::new(RUNNER);
    cmd.args(args).env_remove("RUNNER_SIM_FAULTS");
    for (k, _) in runner::config::ENV_VARS {
        cmd.env_remove(k);
    }
    cmd
}

/// Runs `cmd` to completion: exit code (-1 if killed by a signal), stdout, stderr.
pub(crate) fn output(mut cmd: impl BorrowMut<Command>) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.borrow_mut().output().expect("runner starts");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The rows of the summary table (up to the first blank line), split into columns.
pub(crate) fn table_rows(stdout: &str) -> Vec<Vec<&str>> {
    stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// The path of file `name` in this test process's own directory under the build's tmp dir
/// (`group` names the directory, with the pid).
pub(crate) fn temp(group: &str, name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{group}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir can be created");
    dir.join(name)
}

/// Writes `text` to [`temp`]`(group, name)`; returns the path as text.
pub(crate) fn temp_file(group: &str, name: &str, text: &str) -> String {
    let path = temp(group, name);
    std::fs::write(&path, text).expect("tmp file can be written");
    path.to_string_lossy().into_owned()
}

/// The live-bar column of `symbol`'s row of the summary table, and the rest of the row.
pub(crate) fn row(stdout: &str, symbol: &str) -> (usize, String) {
    let cols = table_rows(stdout)
        .into_iter()
        .find(|c| c[0] == symbol)
        .unwrap_or_else(|| panic!("no row for {symbol} in {stdout}"));
    let live = cols[2]
        .parse()
        .unwrap_or_else(|e| panic!("live bars of {symbol}: {e}"));
    (live, cols[3..].join(" "))
}

/// A fake gateway that sends a 5-second bar every 50 ms (a minute bar every 0.6 s).
pub(crate) fn fast_bars() -> Behaviour {
    Behaviour {
        realtime_interval: std::time::Duration::from_millis(50),
        ..Behaviour::default()
    }
}

/// The fake TWS gateway on a free loopback port, behaving as `behaviour` says.
pub(crate) fn gateway(behaviour: Behaviour) -> Gateway {
    Gateway::start(behaviour).expect("the fake gateway starts")
}

/// The runner's log as it writes it, line by line.
pub(crate) type Log = Lines<BufReader<ChildStderr>>;

/// Starts `cmd` with stdout and stderr piped; returns it and its log (stderr) to read.
pub(crate) fn spawn_logged(mut cmd: impl BorrowMut<Command>) -> (Child, Log) {
    let mut child = cmd
        .borrow_mut()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runner starts");
    let log = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    (child, log)
}

/// Reads `log` up to the first line containing `needle`; returns the lines read, that one
/// last. The log ending first fails the test.
pub(crate) fn wait_for_line(log: &mut Log, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for line in log.by_ref() {
        let line = line.expect("the log is text");
        let found = line.contains(needle);
        seen.push(line);
        if found {
            return seen;
        }
    }
    panic!("log ended without {needle:?}: {seen:?}");
}

/// The pid in a log line saying that worker `generation` started
/// (`worker started generation=<generation> pid=<pid>`); `None` for any other line.
pub(crate) fn started_worker(line: &str, generation: u32) -> Option<u32> {
    let needle = format!("worker started generation={generation} pid=");
    let at = line.find(&needle)? + needle.len();
    line[at..].split_whitespace().next()?.parse().ok()
}

/// Reads the runner's log until worker `generation` has started; returns its pid and the
/// lines read.
pub(crate) fn wait_for_worker(log: &mut Log, generation: u32) -> (u32, Vec<String>) {
    let seen = wait_for_line(log, &format!("worker started generation={generation} pid="));
    let line = seen.last().map(String::as_str).unwrap_or_default();
    let pid = started_worker(line, generation).unwrap_or_else(|| panic!("no pid in {line:?}"));
    (pid, seen)
}

/// Reads the rest of `log` and waits for `child` to end: its exit code (`None` if killed by a
/// signal), its stdout, and the log lines read.
pub(crate) fn finish(child: Child, log: Log) -> (Option<i32>, String, Vec<String>) {
    let rest: Vec<String> = log.map_while(Result::ok).collect();
    let out = child.wait_with_output().expect("runner can be waited for");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), stdout, rest)
}

/// The last line of `text` (empty when it has none).
pub(crate) fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

/// The orders a simulated broker's journal (`sim.orders_file`) says it took: reference → how
/// many times.
pub(crate) fn placed(journal: &std::path::Path) -> std::collections::BTreeMap<String, usize> {
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("P\t")) {
        let order_ref = line.split('\t').nth(3).unwrap().to_string();
        *out.entry(order_ref).or_default() += 1;
    }
    out
}
