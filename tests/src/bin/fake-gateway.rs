//! A fake TWS / IB Gateway on loopback, to try `runner run --backend ibkr` without an account:
//!
//! ```text
//! fake-gateway [PORT] [--unknown SYM,SYM] [--accounts-delay SECONDS]
//!              [--drop-after-order N] [--reject-orders SYM,SYM] [--accounts ID,ID]
//!              [--refuse-live SYMBOL:CODE]... [--report]
//! ```
//!
//! `PORT`: default 4002, 0 picks a free port; `--unknown`: symbols the gateway has no
//! contract for (it answers them with error 200, as IB does); `--accounts-delay`: how long
//! the handshake's account list takes (a gateway still logging in); `--drop-after-order`:
//! close the connection right after the `N`-th order message (0: the first), the order kept
//! and going on as at a real broker; `--reject-orders`: orders on these symbols are rejected
//! (error 201, then Inactive); `--accounts`: the managed accounts it reports (default one
//! paper account, DU1234567); `--refuse-live`: real-time bars of the symbol are refused
//! with IB's error (354: not subscribed), as many as given; `--report`: print what
//! clients ask for, a line each, as the gateway sees it (`realtime SYMBOL ID`,
//! `realtime-cancel ID`, `order ID REF`, `order-cancel ID`), for a test in another language
//! to assert.
//!
//! Prints `listening on HOST:PORT` and serves until killed.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use tests::gateway::{Behaviour, Gateway, Seen};

fn main() -> ExitCode {
    let mut port = "4002".to_string();
    let mut behaviour = Behaviour::default();
    let mut report = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--unknown" => match args.next() {
                Some(list) => behaviour.unknown_symbols = symbols(&list),
                None => {
                    eprintln!("fake-gateway: --unknown needs a list of symbols");
                    return ExitCode::from(2);
                }
            },
            "--accounts-delay" => match args.next().and_then(|s| s.parse::<f64>().ok()) {
                Some(s) if s.is_finite() && (0.0..=3600.0).contains(&s) => {
                    behaviour.accounts_delay = Duration::from_secs_f64(s)
                }
                _ => {
                    eprintln!("fake-gateway: --accounts-delay needs a number of seconds");
                    return ExitCode::from(2);
                }
            },
            "--drop-after-order" => match args.next().and_then(|s| s.parse::<u32>().ok()) {
                Some(n) => behaviour.drop_after_order = Some(n),
                None => {
                    eprintln!("fake-gateway: --drop-after-order needs a number (0: the first)");
                    return ExitCode::from(2);
                }
            },
            "--reject-orders" => match args.next() {
                Some(list) => behaviour.reject_orders = symbols(&list),
                None => {
                    eprintln!("fake-gateway: --reject-orders needs a list of symbols");
                    return ExitCode::from(2);
                }
            },
            "--accounts" => match args.next() {
                Some(list) => behaviour.accounts = symbols(&list),
                None => {
                    eprintln!("fake-gateway: --accounts needs a list of account ids");
                    return ExitCode::from(2);
                }
            },
            "--refuse-live" => match args.next().as_deref().and_then(refusal) {
                Some(r) => behaviour.realtime_refused.push(r),
                None => {
                    eprintln!(
                        "fake-gateway: --refuse-live needs SYMBOL:CODE (354: not subscribed)"
                    );
                    return ExitCode::from(2);
                }
            },
            "--report" => report = true,
            p if !p.starts_with('-') => port = p.to_string(),
            other => {
                eprintln!(
                    "usage: fake-gateway [PORT] [--unknown SYM,SYM] [--accounts-delay SECONDS] \
                     [--drop-after-order N] [--reject-orders SYM,SYM] [--accounts ID,ID] \
                     [--refuse-live SYMBOL:CODE] [--report] \
                     (not {other:?})"
                );
                return ExitCode::from(2);
            }
        }
    }
    let gateway = match Gateway::start_on(&format!("127.0.0.1:{port}"), behaviour) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("fake-gateway: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::from(1);
        }
    };
    println!("listening on {}", gateway.address());
    if !report {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let mut told = Seen::default();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let seen = gateway.seen();
        let mut out = std::io::stdout().lock();
        let lines = report_lines(&told, &seen);
        if lines.is_empty() {
            continue;
        }
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        told = seen;
    }
}

/// `SYMBOL:CODE` as a refusal of real-time bars, with IB's message for the code.
fn refusal(arg: &str) -> Option<(String, i32, String)> {
    let (symbol, code) = arg.split_once(':')?;
    let code: i32 = code.parse().ok()?;
    let message = match code {
        354 => "Requested market data is not subscribed.",
        10089 => "Requested market data requires additional subscription for API.",
        _ => "Market data refused.",
    };
    Some((symbol.to_string(), code, message.to_string()))
}

/// `A,B` as a list (of symbols, of accounts).
fn symbols(list: &str) -> Vec<String> {
    list.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// What `seen` adds to `told`, as `--report` prints it.
fn report_lines(told: &Seen, seen: &Seen) -> Vec<String> {
    let mut lines = Vec::new();
    for (symbol, ids) in &seen.realtime_ids {
        let before = told.realtime_ids.get(symbol).map_or(0, Vec::len);
        for id in ids.iter().skip(before) {
            lines.push(format!("realtime {symbol} {id}"));
        }
    }
    for id in seen
        .realtime_cancels
        .iter()
        .skip(told.realtime_cancels.len())
    {
        lines.push(format!("realtime-cancel {id}"));
    }
    for (id, order_ref) in seen.orders_placed.iter().skip(told.orders_placed.len()) {
        lines.push(format!("order {id} {order_ref}"));
    }
    for id in seen.order_cancels.iter().skip(told.order_cancels.len()) {
        lines.push(format!("order-cancel {id}"));
    }
    lines
}
