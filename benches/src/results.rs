//! The harness's results: one [`Row`] per case and transport, its one-line form between a
//! case's process and the harness ([`row_line`], [`parse_row`]), the median of several runs
//! ([`medians`]), and the report as JSON ([`json`]) or a table ([`table`]).
//!
//! Invariants: a row survives `row_line` then `parse_row` unchanged (names from the fixed
//! set, figures as written); medians keep the order rows first appeared in; the JSON is
//! written by hand because every name in it comes from that fixed set (nothing to escape),
//! integers print without a fraction and other figures with three decimals; the futex-wake
//! count is reported for `shm` only.

use std::collections::BTreeMap;

/// One result row: identifying fields, then figures.
#[derive(Debug, Clone)]
pub struct Row {
    pub transport: &'static str,
    pub case: &'static str,
    pub msg_bytes: Option<usize>,
    pub figures: Vec<(&'static str, f64)>,
}

/// One row as a line: `transport case msg_bytes|- key=value ...`.
pub fn row_line(r: &Row) -> String {
    let figs: Vec<String> = r.figures.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{} {} {} {}",
        r.transport,
        r.case,
        r.msg_bytes.map_or("-".to_string(), |b| b.to_string()),
        figs.join(" ")
    )
}

fn intern(s: &str) -> &'static str {
    const NAMES: &[&str] = &[
        "shm",
        "pipe",
        "pipe_buffered",
        "pipe_buffered_fixed",
        "uds",
        "floor",
        "rtt_hot",
        "rtt_cold",
        "stream",
        "stream_bars",
        "bar_to_strategy",
        "bar_to_strategy_spin",
        "bar_to_strategy_dashboard",
        "idle",
        "p50_ns",
        "p99_ns",
        "p999_ns",
        "iters",
        "msgs_per_s",
        "bytes_per_s",
        "messages",
        "wakes",
        "cpu_pct",
        "allocs",
        "bars",
        "ring_sleeps_per_bar",
        "job_waits_per_bar",
        "handovers",
        "browser_bytes",
        "allocs_per_msg",
        "fan_out_1",
        "fan_out_4",
        "fan_out_16",
        "bars_per_s",
        "hub_idle_cpu_pct",
        "worker_idle_cpu_pct",
        "nats",
        "nats_remote",
        "hub_to_remote",
        "iceoryx2",
    ];
    NAMES.iter().find(|n| **n == s).copied().unwrap_or("?")
}

pub fn parse_row(line: &str) -> Option<Row> {
    let mut parts = line.split_whitespace();
    let transport = intern(parts.next()?);
    let case = intern(parts.next()?);
    let msg_bytes = parts.next()?.parse().ok();
    let figures = parts
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((intern(k), v.parse().ok()?))
        })
        .collect();
    Some(Row {
        transport,
        case,
        msg_bytes,
        figures,
    })
}

/// Per (transport, case, size): the median of each figure over the runs.
pub fn medians(runs: Vec<Vec<Row>>) -> Vec<Row> {
    let mut order = Vec::new();
    let mut groups: BTreeMap<(String, String, Option<usize>), Vec<Row>> = BTreeMap::new();
    for run in runs {
        for row in run {
            let key = (
                row.transport.to_string(),
                row.case.to_string(),
                row.msg_bytes,
            );
            if !groups.contains_key(&key) {
                order.push(key.clone());
            }
            groups.entry(key).or_default().push(row);
        }
    }
    order
        .into_iter()
        .map(|key| {
            let rows = &groups[&key];
            let mut out = rows[0].clone();
            for (i, (_, v)) in out.figures.iter_mut().enumerate() {
                let mut xs: Vec<f64> = rows.iter().map(|r| r.figures[i].1).collect();
                xs.sort_by(f64::total_cmp);
                *v = xs[xs.len() / 2];
            }
            out
        })
        .collect()
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

pub fn json(rows: &[Row]) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            let mut fields = vec![
                format!("\"transport\": \"{}\"", r.transport),
                format!("\"case\": \"{}\"", r.case),
            ];
            if let Some(b) = r.msg_bytes {
                fields.push(format!("\"msg_bytes\": {b}"));
            }
            for (k, v) in &r.figures {
                if r.transport != "shm" && (*k == "wakes") {
                    continue;
                }
                fields.push(format!("\"{k}\": {}", number(*v)));
            }
            format!("{{{}}}", fields.join(", "))
        })
        .collect();
    format!("{{\"results\": [\n  {}\n]}}", items.join(",\n  "))
}

pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    for r in rows {
        let size = r.msg_bytes.map(|b| format!(" {b} B")).unwrap_or_default();
        let figs: Vec<String> = r
            .figures
            .iter()
            .map(|(k, v)| format!("{k}={}", number(*v)))
            .collect();
        s.push_str(&format!(
            "{:<14} {:<9}{:<8} {}\n",
            r.transport,
            r.case,
            size,
            figs.join(" ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(transport: &'static str, p50: f64) -> Row {
        Row {
            transport,
            case: "rtt_hot",
            msg_bytes: None,
            figures: vec![("p50_ns", p50), ("wakes", 3.0)],
        }
    }

    #[test]
    fn a_row_survives_its_line_form() {
        let r = Row {
            transport: "pipe_buffered",
            case: "stream",
            msg_bytes: Some(64),
            figures: vec![("msgs_per_s", 8_630_000.5), ("messages", 25.0)],
        };
        let back = parse_row(&row_line(&r)).unwrap();
        assert_eq!(back.transport, "pipe_buffered");
        assert_eq!(back.case, "stream");
        assert_eq!(back.msg_bytes, Some(64));
        assert_eq!(back.figures, r.figures);
        assert!(parse_row("").is_none());
    }

    #[test]
    fn medians_are_per_figure_in_first_seen_order() {
        let runs = vec![
            vec![row("shm", 500.0), row("pipe", 13_000.0)],
            vec![row("shm", 400.0), row("pipe", 12_000.0)],
            vec![row("shm", 471.0), row("pipe", 12_800.0)],
        ];
        let m = medians(runs);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].transport, m[0].figures[0].1), ("shm", 471.0));
        assert_eq!((m[1].transport, m[1].figures[0].1), ("pipe", 12_800.0));
    }

    #[test]
    fn json_and_table_show_the_figures() {
        let rows = vec![row("shm", 471.0), row("pipe", 12_800.25)];
        assert_eq!(
            json(&rows),
            "{\"results\": [\n  \
             {\"transport\": \"shm\", \"case\": \"rtt_hot\", \"p50_ns\": 471, \"wakes\": 3},\n  \
             {\"transport\": \"pipe\", \"case\": \"rtt_hot\", \"p50_ns\": 12800.250}\n]}"
        );
        assert_eq!(
            table(&rows),
            "shm            rtt_hot           p50_ns=471 wakes=3\n\
             pipe           rtt_hot           p50_ns=12800.250 wakes=3\n"
        );
    }
}
