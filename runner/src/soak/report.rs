//! What a soak found ([`SoakReport`]), whether that passes ([`verdict`]), and the report as
//! one line of JSON ([`json`]) or as text for people ([`text`]).
//!
//! Invariants: a request is sent, answered, failed with a declared error, answered wrongly
//! or lost, and "lost" is what is left of the sent; the JSON is one line, keys in a fixed
//! order, `"key": value` pairs separated by `", "`, every fraction with one decimal (the form
//! scripts and the tests read), and strings escaped by `serde_json`.

use std::fmt::Write as _;
use std::io;

use serde::Serialize;

use super::settings::SoakSettings;

/// The outcome.
#[derive(Debug, Clone)]
pub struct SoakReport {
    pub seconds: f64,
    pub sent: u64,
    pub answered: u64,
    /// Requests that failed with an error (a declared failure), not silently.
    pub failed_declared: u64,
    /// Replies that did not carry their request's sequence number.
    pub mismatched: u64,
    pub bars: u64,
    pub bar_duplicates: u64,
    pub bar_reordered: u64,
    /// Gaps in a symbol's bars across a worker restart (declared).
    pub bar_gaps_declared: u64,
    /// Gaps with no restart to explain them (loss).
    pub bar_gaps_undeclared: u64,
    /// Bars repeated by a replacement worker right after a restart (declared, dropped).
    pub bar_overlaps_declared: u64,
    pub restarts: u32,
    /// Per minute: (count, p50 µs, p99 µs, max µs).
    pub minutes: Vec<(usize, f64, f64, f64)>,
    /// (seconds, runner RSS KiB, worker RSS KiB).
    pub memory: Vec<(f64, u64, u64)>,
    /// (seconds into the run, action, ms until a new worker answered; `None`: never).
    pub chaos: Vec<(f64, &'static str, Option<u64>)>,
    /// Orders, with `--orders`.
    pub orders: Option<OrderCounts>,
    /// Why the run failed; empty if it passed.
    pub failures: Vec<String>,
}

/// The orders of a soak, against what the broker holds at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderCounts {
    /// Orders sent (each with a reference of its own).
    pub sent: u64,
    /// Of those, acknowledged by the broker.
    pub acknowledged: u64,
    /// Of those, failed with an error (a declared failure: the broker may not have them).
    pub failed: u64,
    /// References sent that the broker holds.
    pub at_broker: u64,
    /// Orders the broker holds beyond one per reference.
    pub duplicated: u64,
    /// Acknowledged orders the broker does not hold.
    pub lost: u64,
}

impl SoakReport {
    /// Requests neither answered nor failed.
    pub fn lost(&self) -> u64 {
        self.sent - self.answered - self.failed_declared - self.mismatched
    }
}

/// Why the run failed; empty if it passed.
pub(super) fn verdict(r: &SoakReport, settings: &SoakSettings) -> Vec<String> {
    let mut f = Vec::new();
    if r.sent != r.answered + r.failed_declared + r.mismatched {
        f.push(format!("{} requests neither answered nor failed", r.lost()));
    }
    if r.mismatched > 0 {
        f.push(format!(
            "{} replies with the wrong sequence number",
            r.mismatched
        ));
    }
    if !settings.chaos && r.failed_declared > 0 {
        f.push(format!(
            "{} requests failed without any fault injected",
            r.failed_declared
        ));
    }
    if r.bar_duplicates > 0 || r.bar_reordered > 0 || r.bar_gaps_undeclared > 0 {
        f.push(format!(
            "bars: {} duplicated, {} reordered, {} gaps without a restart",
            r.bar_duplicates, r.bar_reordered, r.bar_gaps_undeclared
        ));
    }
    if r.answered == 0 || r.bars == 0 {
        f.push("no traffic went through".into());
    }
    if let Some(o) = &r.orders {
        if o.duplicated > 0 || o.lost > 0 {
            f.push(format!(
                "orders: {} duplicated at the broker, {} acknowledged and lost",
                o.duplicated, o.lost
            ));
        }
        if o.acknowledged == 0 {
            f.push("no order went through".into());
        }
        if !settings.chaos && o.failed > 0 {
            f.push(format!(
                "{} orders failed without any fault injected",
                o.failed
            ));
        }
    }
    if r.chaos.iter().any(|c| c.2.is_none()) {
        f.push("a worker was not replaced within 30 s".into());
    }
    let base = r.memory.iter().find(|m| m.0 >= 5.0).or(r.memory.first());
    if let (Some(base), Some(end)) = (base, r.memory.last()) {
        let growth_kib = end.1.saturating_sub(base.1);
        if growth_kib > settings.memory_bound_mb * 1024 {
            f.push(format!(
                "runner memory grew by {} MiB (bound {} MiB)",
                growth_kib / 1024,
                settings.memory_bound_mb
            ));
        }
    }
    f
}

/// The JSON form of a report, field by field.
#[derive(Serialize)]
struct Json<'a> {
    seconds: f64,
    sent: u64,
    answered: u64,
    failed_declared: u64,
    mismatched: u64,
    lost: u64,
    bars: u64,
    bar_duplicates: u64,
    bar_reordered: u64,
    bar_gaps_declared: u64,
    bar_gaps_undeclared: u64,
    bar_overlaps_declared: u64,
    restarts: u32,
    rtt_per_minute: Vec<JsonMinute>,
    memory_kib: JsonMemory,
    chaos: Vec<JsonFault>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orders_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orders_acknowledged: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orders_failed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orders_at_broker: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orders_duplicated: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    orders_lost: Option<u64>,
    passed: bool,
    failures: &'a [String],
}

#[derive(Serialize)]
struct JsonMinute {
    minute: usize,
    count: usize,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

#[derive(Serialize)]
struct JsonMemory {
    columns: [&'static str; 3],
    /// (whole seconds, runner KiB, worker KiB).
    samples: Vec<(u64, u64, u64)>,
}

#[derive(Serialize)]
struct JsonFault {
    at_s: f64,
    action: &'static str,
    recovered_ms: Option<u64>,
}

/// One line, `"key": value` and `", "` between items, fractions with one decimal.
struct OneLine;

impl serde_json::ser::Formatter for OneLine {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.begin_array_value(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        write!(writer, "{value:.1}")
    }
}

/// The report as one JSON object on one line.
pub fn json(r: &SoakReport) -> String {
    let doc = Json {
        seconds: r.seconds,
        sent: r.sent,
        answered: r.answered,
        failed_declared: r.failed_declared,
        mismatched: r.mismatched,
        lost: r.lost(),
        bars: r.bars,
        bar_duplicates: r.bar_duplicates,
        bar_reordered: r.bar_reordered,
        bar_gaps_declared: r.bar_gaps_declared,
        bar_gaps_undeclared: r.bar_gaps_undeclared,
        bar_overlaps_declared: r.bar_overlaps_declared,
        restarts: r.restarts,
        rtt_per_minute: r
            .minutes
            .iter()
            .enumerate()
            .map(|(minute, &(count, p50_us, p99_us, max_us))| JsonMinute {
                minute,
                count,
                p50_us,
                p99_us,
                max_us,
            })
            .collect(),
        memory_kib: JsonMemory {
            columns: ["seconds", "runner", "worker"],
            samples: r
                .memory
                .iter()
                .map(|&(t, runner, worker)| (t.round() as u64, runner, worker))
                .collect(),
        },
        chaos: r
            .chaos
            .iter()
            .map(|&(at_s, action, recovered_ms)| JsonFault {
                at_s,
                action,
                recovered_ms,
            })
            .collect(),
        orders_sent: r.orders.map(|o| o.sent),
        orders_acknowledged: r.orders.map(|o| o.acknowledged),
        orders_failed: r.orders.map(|o| o.failed),
        orders_at_broker: r.orders.map(|o| o.at_broker),
        orders_duplicated: r.orders.map(|o| o.duplicated),
        orders_lost: r.orders.map(|o| o.lost),
        passed: r.failures.is_empty(),
        failures: &r.failures,
    };
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, OneLine);
    match doc.serialize(&mut ser) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        // Writing into memory fails only if serialisation itself does, which these types
        // cannot; say so in JSON rather than panic.
        Err(e) => format!("{{\"error\": {:?}}}", e.to_string()),
    }
}

/// The report for people.
pub fn text(r: &SoakReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "soak: {:.0} s; requests sent {}, answered {}, failed with a declared error {}, \
         wrong reply {}, lost {}",
        r.seconds,
        r.sent,
        r.answered,
        r.failed_declared,
        r.mismatched,
        r.lost()
    );
    let _ = writeln!(
        s,
        "bars: {} received, {} duplicated, {} reordered, {} lost; across restarts: {} gaps, \
         {} repeated bars dropped",
        r.bars,
        r.bar_duplicates,
        r.bar_reordered,
        r.bar_gaps_undeclared,
        r.bar_gaps_declared,
        r.bar_overlaps_declared
    );
    for (i, (n, p50, p99, max)) in r.minutes.iter().enumerate() {
        let _ = writeln!(
            s,
            "minute {i}: {n} round trips, p50 {p50:.1} µs, p99 {p99:.1} µs, max {max:.1} µs"
        );
    }
    let recoveries: Vec<String> = r
        .chaos
        .iter()
        .map(|(t, a, ms)| {
            format!(
                "{a}@{t:.1}s→{}",
                ms.map_or("never".to_string(), |m| format!("{m} ms"))
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "worker restarts: {}; chaos: {}",
        r.restarts,
        if recoveries.is_empty() {
            "none".to_string()
        } else {
            recoveries.join(", ")
        }
    );
    if let Some(o) = &r.orders {
        let _ = writeln!(
            s,
            "orders: {} sent, {} acknowledged, {} failed with a declared error; at the broker {}, \
             duplicated {}, lost {}",
            o.sent, o.acknowledged, o.failed, o.at_broker, o.duplicated, o.lost
        );
    }
    if let (Some(first), Some(last)) = (r.memory.first(), r.memory.last()) {
        let _ = writeln!(
            s,
            "memory (RSS): runner {} → {} KiB; worker {} → {} KiB",
            first.1, last.1, first.2, last.2
        );
    }
    let _ = writeln!(
        s,
        "{}",
        if r.failures.is_empty() {
            "PASSED".to_string()
        } else {
            format!("FAILED: {}", r.failures.join("; "))
        }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn report() -> SoakReport {
        SoakReport {
            seconds: 3.04,
            sent: 1500,
            answered: 1498,
            failed_declared: 1,
            mismatched: 0,
            bars: 720,
            bar_duplicates: 0,
            bar_reordered: 0,
            bar_gaps_declared: 2,
            bar_gaps_undeclared: 0,
            bar_overlaps_declared: 1,
            restarts: 1,
            minutes: vec![(1498, 20.25, 61.0, 1289.04)],
            memory: vec![(0.2, 16000, 5500), (1.49, 16100, 5600)],
            chaos: vec![(1.5, "kill", Some(184)), (2.75, "stop", None)],
            orders: None,
            failures: vec!["a \"quoted\" failure".into()],
        }
    }

    #[test]
    fn orders_appear_in_the_json_and_text_only_when_placed() {
        assert!(!json(&report()).contains("orders_"));
        assert!(!text(&report()).contains("orders:"));
        let with = SoakReport {
            orders: Some(OrderCounts {
                sent: 40,
                acknowledged: 39,
                failed: 1,
                at_broker: 40,
                duplicated: 0,
                lost: 0,
            }),
            ..report()
        };
        let j = json(&with);
        assert!(
            j.contains(
                "\"orders_sent\": 40, \"orders_acknowledged\": 39, \"orders_failed\": 1, \
                 \"orders_at_broker\": 40, \"orders_duplicated\": 0, \"orders_lost\": 0, \
                 \"passed\": false"
            ),
            "{j}"
        );
        assert!(text(&with).contains(
            "orders: 40 sent, 39 acknowledged, 1 failed with a declared error; at the broker 40, \
             duplicated 0, lost 0\n"
        ));
    }

    #[test]
    fn the_json_is_one_line_in_the_documented_form() {
        let j = json(&report());
        assert_eq!(
            j,
            "{\"seconds\": 3.0, \"sent\": 1500, \"answered\": 1498, \"failed_declared\": 1, \
             \"mismatched\": 0, \"lost\": 1, \"bars\": 720, \"bar_duplicates\": 0, \
             \"bar_reordered\": 0, \"bar_gaps_declared\": 2, \"bar_gaps_undeclared\": 0, \
             \"bar_overlaps_declared\": 1, \"restarts\": 1, \
             \"rtt_per_minute\": [{\"minute\": 0, \"count\": 1498, \"p50_us\": 20.2, \
             \"p99_us\": 61.0, \"max_us\": 1289.0}], \
             \"memory_kib\": {\"columns\": [\"seconds\", \"runner\", \"worker\"], \
             \"samples\": [[0, 16000, 5500], [1, 16100, 5600]]}, \
             \"chaos\": [{\"at_s\": 1.5, \"action\": \"kill\", \"recovered_ms\": 184}, \
             {\"at_s\": 2.8, \"action\": \"stop\", \"recovered_ms\": null}], \
             \"passed\": false, \"failures\": [\"a \\\"quoted\\\" failure\"]}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(parsed["lost"], 1);
    }

    #[test]
    fn the_text_names_every_count() {
        let t = text(&report());
        assert!(t.starts_with(
            "soak: 3 s; requests sent 1500, answered 1498, failed with a declared error 1, \
             wrong reply 0, lost 1\n"
        ));
        assert!(t.contains("minute 0: 1498 round trips, p50 20.2 µs, p99 61.0 µs"));
        assert!(
            t.contains("chaos: kill@1.5s→184 ms, stop@2.8s→never"),
            "{t}"
        );
        assert!(t.contains("memory (RSS): runner 16000 → 16100 KiB; worker 5500 → 5600 KiB"));
        assert!(t.ends_with("FAILED: a \"quoted\" failure\n"), "{t}");
    }

    #[test]
    fn a_clean_run_passes_and_losses_or_errors_fail_it() {
        let settings = SoakSettings {
            duration: Duration::from_secs(3),
            rate: 500,
            chaos: false,
            symbols: 4,
            memory_bound_mb: 64,
            order_rate: 0,
        };
        let clean = SoakReport {
            answered: 1500,
            failed_declared: 0,
            chaos: Vec::new(),
            failures: Vec::new(),
            ..report()
        };
        assert_eq!(verdict(&clean, &settings), Vec::<String>::new());
        let lossy = SoakReport {
            answered: 1490,
            bar_gaps_undeclared: 1,
            ..clean.clone()
        };
        assert_eq!(
            verdict(&lossy, &settings),
            vec![
                "10 requests neither answered nor failed".to_string(),
                "bars: 0 duplicated, 0 reordered, 1 gaps without a restart".to_string(),
            ]
        );
        let bloated = SoakReport {
            memory: vec![(5.0, 10_000, 0), (60.0, 10_000 + 65 * 1024, 0)],
            ..clean.clone()
        };
        assert_eq!(
            verdict(&bloated, &settings),
            vec!["runner memory grew by 65 MiB (bound 64 MiB)".to_string()]
        );
        let unreplaced = SoakReport {
            chaos: vec![(1.0, "stop", None)],
            ..clean
        };
        assert_eq!(
            verdict(
                &unreplaced,
                &SoakSettings {
                    chaos: true,
                    ..settings
                }
            ),
            vec!["a worker was not replaced within 30 s".to_string()]
        );
        let orders = |duplicated, lost| SoakReport {
            orders: Some(OrderCounts {
                sent: 10,
                acknowledged: 10,
                failed: 0,
                at_broker: 10,
                duplicated,
                lost,
            }),
            chaos: Vec::new(),
            failures: Vec::new(),
            answered: 1500,
            failed_declared: 0,
            ..report()
        };
        assert_eq!(verdict(&orders(0, 0), &settings), Vec::<String>::new());
        assert_eq!(
            verdict(&orders(1, 0), &settings),
            vec!["orders: 1 duplicated at the broker, 0 acknowledged and lost".to_string()]
        );
        assert_eq!(
            verdict(&orders(0, 2), &settings),
            vec!["orders: 0 duplicated at the broker, 2 acknowledged and lost".to_string()]
        );
    }
}
