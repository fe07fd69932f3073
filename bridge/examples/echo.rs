//! The smallest complete use of the bridge: a runner starts a worker process (this same
//! executable, with the argument `worker`), sends it a request, gets the reply and an event,
//! and closes; the worker sees the close and exits.
//!
//! ```sh
//! cargo run -p bridge --example echo
//! ```

use std::process::{Command, ExitCode};
use std::time::Duration;

use bridge::protocol::{Event, Reply, Request};
use bridge::{channel, Client, ClientConfig, RecvError, Server};

fn main() -> ExitCode {
    let result = if std::env::args().nth(1).as_deref() == Some("worker") {
        worker()
    } else {
        runner()
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Both sides must present the same build id; this example's two sides are one executable.
fn config() -> channel::ChannelConfig {
    channel::ChannelConfig {
        build_id: "echo-example".into(),
        ..channel::ChannelConfig::default()
    }
}

fn runner() -> Result<(), Box<dyn std::error::Error>> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("worker");
    let cfg = ClientConfig {
        channel: config(),
        ..ClientConfig::default()
    };
    // Creates the segment, starts the worker, checks its hello (protocol and build).
    let (mut client, events) = Client::spawn(cmd, &cfg)?;
    println!("runner: worker {} attached", client.control().peer_pid());

    // A request from any thread; its reply is matched by id, by its deadline.
    let reply = client.request(
        Request::Ping {
            payload: b"hello".to_vec(),
        },
        Duration::from_secs(5),
    )?;
    println!("runner: reply {reply:?}");

    // Events arrive on their own channel.
    let event = events.recv_timeout(Duration::from_secs(5))?;
    println!("runner: event {event:?}");

    // Closing tells the worker, waits for it to exit (killing it after a grace period).
    client.close();
    println!("runner: closed");
    Ok(())
}

fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let mut server = Server::attach(&config(), Duration::from_secs(5))?;
    let responder = server.responder();
    loop {
        match server.next(Duration::from_secs(1)) {
            Ok(Some(incoming)) => {
                if let Request::Ping { payload } = incoming.request {
                    responder.reply(incoming.id, Reply::Pong { payload })?;
                    responder.event(Event::Notice {
                        code: 0,
                        message: "pong sent".into(),
                    })?;
                }
            }
            Ok(None) => {}
            // The runner closed (or died): everything it sent was received; stop.
            Err(RecvError::PeerGone(reason)) => {
                eprintln!("worker: runner gone ({reason}), exiting");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
}
