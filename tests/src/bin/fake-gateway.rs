//! A fake TWS / IB Gateway on loopback, to try `runner run --backend ibkr` without an account:
//!
//! ```text
//! fake-gateway [PORT]      (default 4002; 0 picks a free port)
//! ```
//!
//! Prints `listening on HOST:PORT` and serves until killed.

use std::process::ExitCode;
use std::time::Duration;

use tests::gateway::{Behaviour, Gateway};

fn main() -> ExitCode {
    let port = std::env::args().nth(1).unwrap_or_else(|| "4002".into());
    let gateway = match Gateway::start_on(&format!("127.0.0.1:{port}"), Behaviour::default()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("fake-gateway: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::from(1);
        }
    };
    println!("listening on {}", gateway.address());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
