//! Helpers shared by the runner's integration tests: starting the runner with a clean
//! environment, running it to completion, reading its summary table, and files under the
//! build's tmp dir.

#![allow(dead_code)] // each test binary uses its own subset

use std::borrow::BorrowMut;
use std::path::PathBuf;
use std::process::{Command, Output};

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
