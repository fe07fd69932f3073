//! The run's report ([`write`]): one self-contained HTML file with the dashboard's charts and
//! tables as the run ended, the P&L over time, the bridge's round trips, and the run's
//! interruptions, restarts and refusals; the charts library, the page's script and the data
//! are inlined, so it opens offline.
//!
//! Invariants: the file is written whole or not at all (a temporary file renamed over it);
//! the data cannot end the script it is in (every `<` in it is escaped).

use std::io::Write as _;
use std::path::Path;

use anyhow::Result;

use super::assets::{APP_JS, CHARTS_JS, PAGE as TEMPLATE, STYLE};
use super::board::Board;
use super::views;

/// The report's HTML for `board`, with the run's final round trips (microseconds, sorted).
pub(crate) fn render(board: &Board, round_trips_us: &[f64]) -> String {
    let data = views::report(board, round_trips_us)
        .to_string()
        // Inside a string only, where `\u003c` is the same character.
        .replace('<', "\\u003c");
    let head = format!(
        "<style>\n{STYLE}\n</style>\n<script>\n{CHARTS_JS}\n</script>\n\
         <script>window.IBBRIDGE_REPORT = {data};</script>\n"
    );
    TEMPLATE
        .replace(
            "<link rel=\"stylesheet\" href=\"style.css\">",
            "<!-- styles inlined below -->",
        )
        .replace("<script src=\"lightweight-charts.js\"></script>", &head)
        .replace(
            "<script src=\"app.js\"></script>",
            &format!("<script>\n{APP_JS}\n</script>"),
        )
        .replace(
            "<title>ibbridge dashboard</title>",
            "<title>ibbridge run report</title>",
        )
}

/// Writes the report of `board` to `path`.
pub(crate) fn write(path: &Path, board: &Board, round_trips_us: &[f64]) -> Result<()> {
    let html = render(board, round_trips_us);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let tmp = path.with_extension("html.partial");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(html.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(d) = dir {
        // The rename is durable once the directory is.
        if let Ok(d) = std::fs::File::open(d) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
