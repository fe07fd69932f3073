//! End-to-end tests of trading on the simulated market: orders by hand and from the strategy,
//! exactly once through a worker's death, the risk limits, and the live-account rule. The
//! simulated broker's journal (`sim.orders_file`) is what the broker holds: each test reads it
//! to count the orders that reached the broker.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::PathBuf;

mod common;
use common::{output, placed, runner};

/// A config file in this test's directory holding `text` and an orders file of its own;
/// returns (config path, orders file path).
fn setup(name: &str, text: &str) -> (String, PathBuf) {
    let journal = common::temp("trading", &format!("{name}.journal"));
    let _ = std::fs::remove_file(&journal);
    let config = common::temp_file(
        "trading",
        &format!("{name}.toml"),
        &format!("[sim]\norders_file = \"{}\"\n{text}", journal.display()),
    );
    (config, journal)
}

#[test]
fn a_hand_order_is_followed_to_its_fill_and_is_at_the_broker_once() {
    let (config, journal) = setup("hand", "");
    let (code, stdout, stderr) = output(runner(&[
        "order", "buy", "SPY", "10", "--ref", "hand-1", "--config", &config,
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(
        lines[0],
        "order hand-1 (broker #1): buy 10 SPY market day: working"
    );
    assert!(lines[1].starts_with("order hand-1: fill 10 @ "), "{stdout}");
    assert!(lines[1].ends_with(" (commission 1.00)"), "{stdout}");
    assert!(
        lines[2]
            .starts_with("order hand-1 (broker #1): buy 10 SPY market day: filled, 10 filled @ "),
        "{stdout}"
    );
    assert_eq!(
        placed(&journal),
        BTreeMap::from([("hand-1".to_string(), 1)])
    );

    // Later commands see the same broker.
    let (code, stdout, _) = output(runner(&["positions", "--config", &config]));
    assert_eq!(code, 0);
    let row = stdout.lines().nth(1).unwrap();
    assert_eq!(
        row.split_whitespace().take(3).collect::<Vec<_>>(),
        ["DU0000001", "SPY", "10"]
    );
    assert!(
        stdout.contains("account DU0000001: net liquidation "),
        "{stdout}"
    );
    let (code, stdout, _) = output(runner(&["orders", "--config", &config]));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("order hand-1 (broker #1): buy 10 SPY market day: filled"),
        "{stdout}"
    );
}

#[test]
fn placing_the_same_reference_again_finds_the_first_order() {
    let (config, journal) = setup("again", "");
    let args = [
        "order", "sell", "QQQ", "3", "--limit", "1", "--tif", "gtc", "--ref", "same-1", "--config",
        &config,
    ];
    let (code, first, stderr) = output(runner(&args));
    assert_eq!(code, 0, "{first}\n{stderr}");
    let (code, second, stderr) = output(runner(&args));
    assert_eq!(code, 0, "{second}\n{stderr}");
    assert!(
        second.starts_with("order same-1 (broker #1): sell 3 QQQ limit 1 gtc: filled"),
        "{second}"
    );
    assert!(
        stderr.contains("order already at the simulated broker; not placed again"),
        "{stderr}"
    );
    assert_eq!(
        placed(&journal),
        BTreeMap::from([("same-1".to_string(), 1)])
    );
}

/// The worker dies (SIGKILL) right after the broker took the order, before it answered: the
/// runner sends the order again, with its reference, to a new worker, which finds it at the
/// broker and places nothing.
#[test]
fn a_worker_killed_right_after_the_broker_took_the_order_leaves_one_order() {
    let (config, journal) = setup("killed", "");
    let (code, stdout, stderr) = output(
        runner(&[
            "order", "buy", "SPY", "10", "--ref", "kill-1", "--config", &config,
        ])
        .env("RUNNER_SIM_FAULTS", "crash_after_orders=1"),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("injected fault: kill self after taking 1 orders"),
        "{stderr}"
    );
    assert!(stderr.contains("replacing worker"), "{stderr}");
    assert!(
        stderr.contains("order already at the simulated broker; not placed again"),
        "{stderr}"
    );
    assert!(stdout.contains(": filled, 10 filled @ "), "{stdout}");
    assert_eq!(
        placed(&journal),
        BTreeMap::from([("kill-1".to_string(), 1)])
    );
}

#[test]
fn each_risk_limit_refuses_before_anything_leaves() {
    for (limit, settings, args, says) in [
        (
            "quantity",
            "max_order_quantity = 5",
            vec!["buy", "SPY", "10"],
            "refused by trading.max_order_quantity: 10 shares, at most 5",
        ),
        (
            "value",
            "max_order_value = 100",
            vec!["buy", "SPY", "10", "--limit", "20"],
            "refused by trading.max_order_value: 10 shares at 20.00 is 200.00, at most 100",
        ),
        (
            "position",
            "max_position = 5",
            vec!["sell", "SPY", "6", "--limit", "1"],
            "refused by trading.max_position: SPY would hold -6 shares, at most 5 either way",
        ),
    ] {
        let (config, journal) = setup(
            &format!("limit-{limit}"),
            &format!("[trading]\n{settings}\n"),
        );
        let mut full = vec!["order"];
        full.extend(&args);
        full.extend(["--config", &config]);
        let (code, stdout, stderr) = output(runner(&full));
        assert_eq!(code, 1, "{limit}: {stdout}\n{stderr}");
        let last = stderr.lines().last().unwrap();
        assert!(last.starts_with("error: order "), "{limit}: {last}");
        assert!(last.ends_with(says), "{limit}: {last}");
        assert!(
            placed(&journal).is_empty(),
            "{limit}: nothing reached the broker"
        );
    }
}

/// Strategy settings that give signals every few bars: 5-second bars, 2/4 crossover.
const FAST_SIGNALS: &str = "[history]\nbar_seconds = 5\nduration_seconds = 3600\n\
                            [strategy]\nfast = 2\nslow = 4\n";

#[test]
fn the_rate_limit_refuses_the_strategys_second_order_within_a_minute() {
    let (config, journal) = setup(
        "rate",
        &format!("{FAST_SIGNALS}[trading]\nmax_orders_per_minute = 1\n"),
    );
    let (code, stdout, stderr) = output(runner(&[
        "run",
        "--trade",
        "--duration",
        "4",
        "--config",
        &config,
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("trading: 1 orders ("),
        "exactly one order in the minute: {stdout}"
    );
    assert!(
        !stdout.contains(" 0 refused by the risk limits"),
        "{stdout}"
    );
    assert!(
        stderr.contains("refused by trading.max_orders_per_minute"),
        "{stderr}"
    );
    assert_eq!(placed(&journal).len(), 1);
}

#[test]
fn a_live_account_is_refused_unless_allowed() {
    let (config, journal) = setup("live", "account = \"U1234567\"\n");
    let (code, _, stderr) = output(runner(&["order", "buy", "SPY", "1", "--config", &config]));
    assert_eq!(code, 2, "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert_eq!(
        last,
        "error: the sim broker manages a live account (U1234567): trading refused; set \
         trading.allow_live = true to trade on it"
    );
    let (code, _, stderr) = output(runner(&[
        "run",
        "--trade",
        "--duration",
        "1",
        "--config",
        &config,
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr
        .lines()
        .last()
        .unwrap()
        .contains("live account (U1234567)"));
    assert!(placed(&journal).is_empty());

    let allowed = common::temp_file(
        "trading",
        "live-allowed.toml",
        &format!(
            "[sim]\norders_file = \"{}\"\naccount = \"U1234567\"\n[trading]\nallow_live = true\n",
            journal.display()
        ),
    );
    let (code, stdout, stderr) =
        output(runner(&["order", "buy", "SPY", "1", "--config", &allowed]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(placed(&journal).len(), 1);
    // Without --trade a run places nothing, whatever the account.
    let (code, stdout, _) = output(runner(&["run", "--duration", "1", "--config", &config]));
    assert_eq!(code, 0);
    assert!(!stdout.contains("trading:"), "{stdout}");
}

/// Orders the strategy placed: the signal rows carrying an order reference.
fn signal_orders(csv: &str) -> Vec<String> {
    csv.lines()
        .skip(1)
        .filter_map(|l| l.rsplit(',').next().filter(|r| !r.is_empty()))
        .map(String::from)
        .collect()
}

#[test]
fn a_trading_run_places_its_signals_orders_once_each_and_reports_them() {
    let (config, journal) = setup("run", FAST_SIGNALS);
    let signals = common::temp("trading", "run-signals.csv");
    let (code, stdout, stderr) = output(runner(&[
        "run",
        "--trade",
        "--duration",
        "4",
        "--symbols",
        "SPY,QQQ,AAPL",
        "--signals",
        signals.to_str().unwrap(),
        "--config",
        &config,
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let csv = std::fs::read_to_string(&signals).unwrap();
    let refs = signal_orders(&csv);
    assert!(!refs.is_empty(), "signals in 4 s of 5-second bars: {csv}");
    let at_broker = placed(&journal);
    assert_eq!(at_broker.len(), refs.len(), "{stdout}");
    for r in &refs {
        assert_eq!(at_broker.get(r), Some(&1), "{r} once at the broker");
    }
    let orders_line = stdout.lines().find(|l| l.starts_with("trading: ")).unwrap();
    assert!(
        orders_line.starts_with(&format!("trading: {} orders (", refs.len())),
        "{orders_line}"
    );
    assert!(
        orders_line.contains(" 0 working,"),
        "cancelled or filled by the end: {orders_line}"
    );
    assert!(
        stdout.contains("symbol     position   avg cost"),
        "{stdout}"
    );
}

/// The worker dies right after the broker took the run's second order: every order the
/// strategy placed is at the broker exactly once, and the summary counts them all.
#[test]
fn a_trading_run_survives_a_worker_killed_mid_order_without_duplicates() {
    let (config, journal) = setup("run-killed", FAST_SIGNALS);
    let signals = common::temp("trading", "run-killed-signals.csv");
    let (code, stdout, stderr) = output(
        runner(&[
            "run",
            "--trade",
            "--duration",
            "5",
            "--signals",
            signals.to_str().unwrap(),
            "--config",
            &config,
        ])
        .env("RUNNER_SIM_FAULTS", "crash_after_orders=2"),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("injected fault: kill self after taking 2 orders"),
        "{stderr}"
    );
    assert!(stdout.contains("worker restarts: 1;"), "{stdout}");
    let refs = signal_orders(&std::fs::read_to_string(&signals).unwrap());
    let at_broker = placed(&journal);
    assert!(refs.len() >= 2, "{refs:?}");
    assert_eq!(at_broker.len(), refs.len());
    assert!(at_broker.values().all(|&n| n == 1), "{at_broker:?}");
    for r in &refs {
        assert!(at_broker.contains_key(r), "{r}");
    }
}

#[test]
fn a_working_order_is_changed_by_hand_and_a_filled_one_is_not() {
    let (config, journal) = setup("modify", "");
    let (code, stdout, stderr) = output(runner(&[
        "order", "buy", "SPY", "5", "--limit", "1", "--tif", "gtc", "--ref", "mod-1", "--wait",
        "0", "--config", &config,
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains(": working"), "{stdout}");
    // Raised to a limit far above the market: the next bar fills it.
    let (code, stdout, stderr) = output(runner(&[
        "order",
        "modify",
        "--ref",
        "mod-1",
        "--limit",
        "2000",
        "--quantity",
        "8",
        "--config",
        &config,
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        stdout.trim(),
        "order mod-1 (broker #1): buy 8 SPY limit 2000 gtc: working"
    );
    let filled = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (_, out, _) = output(runner(&["orders", "--config", &config]));
        out.contains("order mod-1 (broker #1): buy 8 SPY limit 2000 gtc: filled, 8 filled @ ")
    });
    assert!(filled, "the changed order fills at the next bar");
    let (code, _, stderr) = output(runner(&[
        "order",
        "modify",
        "--ref",
        "mod-1",
        "--quantity",
        "9",
        "--config",
        &config,
    ]));
    assert_eq!(code, 1);
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .ends_with("order mod-1 is filled: it cannot change"),
        "{stderr}"
    );
    // Raising an order past a limit is refused like a new order.
    let (code, _, stderr) = output(runner(&[
        "order", "buy", "QQQ", "5", "--limit", "1", "--tif", "gtc", "--ref", "mod-2", "--wait",
        "0", "--config", &config,
    ]));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = output(runner(&[
        "order",
        "modify",
        "--ref",
        "mod-2",
        "--quantity",
        "5000",
        "--config",
        &config,
    ]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("refused by trading.max_order_quantity: 5000 shares, at most 1000"),
        "{stderr}"
    );
    assert_eq!(placed(&journal).len(), 2);
}

/// Orders still working when the run ends are cancelled before the worker goes (the
/// simulated broker fills at the next hour's bar; the market's clock starts a minute past an
/// hour, so that bar is 59 real minutes away at 60x: none fills in time, whatever the hour of
/// the wall clock).
#[test]
fn a_run_cancels_its_working_orders_when_it_ends() {
    // 1_699_999_200 is a whole hour (UTC).
    let text = format!(
        "fill_seconds = 3600\nstart = {}\n{FAST_SIGNALS}",
        1_699_999_200 + 60
    );
    let (config, journal) = setup("exit", &text);
    let (code, stdout, stderr) = output(runner(&[
        "run",
        "--trade",
        "--duration",
        "3",
        "--symbols",
        "SPY,QQQ,AAPL,MSFT",
        "--config",
        &config,
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let line = stdout.lines().find(|l| l.starts_with("trading: ")).unwrap();
    let n = placed(&journal).len();
    assert!(n >= 1, "{stdout}");
    assert!(
        line.starts_with(&format!(
            "trading: {n} orders (0 filled, 0 working, {n} cancelled, 0 rejected)"
        )),
        "{line}"
    );
    let cancels = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("C\t"))
        .count();
    assert_eq!(cancels, n);
}

/// An orders file that holds another market's book (another seed) is a configuration
/// problem: a command by hand says so in one line of its own and exits 2, as `run` does after
/// its worker could not start; nothing is placed.
#[test]
fn an_orders_file_of_another_seed_is_refused_in_one_line() {
    let (config, journal) = setup("seed-a", "seed = 11\n");
    let (code, _, stderr) = output(runner(&["positions", "--config", &config]));
    assert_eq!(code, 0, "{stderr}");
    let other = common::temp_file(
        "trading",
        "seed-b.toml",
        &format!("[sim]\norders_file = \"{}\"\nseed = 9\n", journal.display()),
    );
    let why = format!(
        "orders file {} holds a book of the market of seed 11, not 9: use that seed or another \
         orders file",
        journal.display()
    );
    let (code, stdout, stderr) = output(runner(&[
        "order", "buy", "SPY", "1", "--ref", "seed-1", "--config", &other,
    ]));
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some(format!("error: {why}").as_str()),
        "{stderr}"
    );
    let (code, _, stderr) = output(runner(&["run", "--config", &other]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("error: cannot start the worker: {why}")),
        "{stderr}"
    );
    assert!(placed(&journal).is_empty());
}

/// A journal folded by a run (written here as a run's worker writes it): later commands read
/// its totals and references, list how many orders were folded, and never place a folded
/// reference again.
#[test]
fn a_folded_journal_is_read_by_later_commands_and_its_references_are_not_placed_again() {
    let (config, journal) = setup("folded", "");
    let (code, stdout, stderr) = output(runner(&[
        "order", "buy", "SPY", "10", "--ref", "kept-1", "--config", &config,
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let time = lines[1].split('\t').nth(1).unwrap();
    // Three earlier orders folded: 5 SPY bought at 400, 2 commission each.
    let folded = format!(
        "{}\nF\t1\t3\t{time}\t3\t-2006\nS\tSPY\t5\t400\nR\told\t1\t2\nR\tspecial\t-\t-\n{}\n",
        lines[0],
        lines[1].replacen("\t1\t", "\t4\t", 1)
    );
    std::fs::write(&journal, folded).unwrap();

    let (code, stdout, stderr) = output(runner(&["orders", "--config", &config]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("order kept-1 (broker #4): buy 10 SPY market day: filled"),
        "{stdout}"
    );
    assert_eq!(
        lines[1],
        "3 earlier orders final and settled, folded into the book's totals: old-1 to old-2, \
         special"
    );
    let (code, stdout, _) = output(runner(&["positions", "--config", &config]));
    assert_eq!(code, 0);
    let row = stdout.lines().nth(1).unwrap();
    assert_eq!(
        row.split_whitespace().take(3).collect::<Vec<_>>(),
        ["DU0000001", "SPY", "15"],
        "{stdout}"
    );
    for folded_ref in ["old-2", "special"] {
        let (code, stdout, stderr) = output(runner(&[
            "order", "buy", "SPY", "1", "--ref", folded_ref, "--config", &config,
        ]));
        assert_eq!(code, 1, "{stdout}\n{stderr}");
        assert!(
            format!("{stdout}{stderr}").contains("folded out of the book"),
            "{stdout}\n{stderr}"
        );
    }
    // A new reference is placed, with the next broker id after the folded ones.
    let (code, stdout, stderr) = output(runner(&[
        "order", "sell", "SPY", "1", "--ref", "new-1", "--config", &config,
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.starts_with("order new-1 (broker #5)"), "{stdout}");
    assert_eq!(
        placed(&journal),
        BTreeMap::from([("kept-1".to_string(), 1), ("new-1".to_string(), 1)])
    );
}
