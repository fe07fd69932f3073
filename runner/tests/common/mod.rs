//! Helpers shared by the runner's integration tests.

#![allow(dead_code)] // each test binary uses its own subset

use std::borrow::BorrowMut;
use std::process::{Command, Output};

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
