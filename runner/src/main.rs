//! The `runner` command: parses the command line ([`runner::cli`]) and hands each command to
//! the module that carries it out.
//!
//! Invariants: nothing else happens here; the hidden `worker` command only serves as a
//! worker (`worker::entry::serve`, the one way in for every program).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use bridge::protocol::Side;
use clap::Parser;
use runner::by_hand;
use runner::cli::{Cli, Command, HubAction, OrderAction, PlaceArgs};
use runner::launch::{fail, EXIT_CONFIG};

/// Small zeroed allocations (every string and byte payload the codec decodes) through the
/// per-thread cache: see [`bridge::Allocator`].
#[global_allocator]
static ALLOC: bridge::Allocator = bridge::Allocator;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Worker => ExitCode::from(worker::entry::serve(None)),
        Command::CheckConfig(args) => runner::cli::check_config(&args),
        Command::Soak(args) => runner::soak::command(&args),
        Command::Run(args) => runner::run_command::command(&args),
        Command::Hub(args) => match args.action {
            Some(HubAction::Status { name, json }) => {
                let dir = args
                    .config
                    .load()
                    .map(|c| c.hub.directory())
                    .unwrap_or_else(|_| bridge::channel::default_hub_dir());
                runner::hub::status_command(&dir, &name, json)
            }
            None => runner::hub::command(args.name.as_deref(), args.config.load()),
        },
        Command::Order(args) => match args.action {
            OrderAction::Buy(p) => place(Side::Buy, &p),
            OrderAction::Sell(p) => place(Side::Sell, &p),
            OrderAction::Modify(m) => match m.change() {
                Ok(change) => by_hand::command(m.config.load(), move |cfg, setup, _, say| {
                    by_hand::modify(cfg, setup, change, say)
                }),
                Err(e) => fail(EXIT_CONFIG, e),
            },
            OrderAction::Cancel(c) => {
                let order_ref = if c.all { None } else { c.order_ref.clone() };
                by_hand::command(c.config.load(), move |cfg, setup, _, say| {
                    by_hand::cancel(cfg, setup, order_ref.as_deref(), say)
                })
            }
        },
        Command::Orders(args) => by_hand::command(args.load(), |cfg, setup, _, say| {
            by_hand::orders(cfg, setup, say)
        }),
        Command::Positions(args) => by_hand::command(args.load(), |cfg, setup, _, say| {
            by_hand::positions(cfg, setup, say)
        }),
    }
}

/// `runner order buy|sell SYMBOL QTY`.
fn place(side: Side, p: &PlaceArgs) -> ExitCode {
    match p.hand_order(side) {
        Ok(hand) => by_hand::command(p.config.load(), move |cfg, setup, stop, say| {
            by_hand::place(cfg, setup, &hand, stop, say)
        }),
        Err(e) => fail(EXIT_CONFIG, e),
    }
}
