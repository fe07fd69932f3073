//! The hello exchange: the first frame each way names the sender's protocol version, build
//! and pid; a mismatch of either is refused on both sides.
//!
//! Invariants: nothing but a hello is taken as the first frame; a side that refuses the
//! other's hello sends nothing more.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use super::config::ChannelConfig;
use super::error::{HelloError, StartError};
use crate::codec;
use crate::protocol::{Body, Envelope, Hello};
use crate::ring::{Consumer, Producer};

/// Sends this side's hello.
pub(crate) fn send(tx: &mut Producer, cfg: &ChannelConfig) -> Result<(), StartError> {
    let hello = Envelope {
        id: 0,
        body: Body::Hello(Hello {
            protocol_version: cfg.protocol_version,
            build_id: cfg.build_id.clone(),
            pid: std::process::id(),
        }),
    };
    let bytes = codec::encode(&hello).map_err(|e| StartError::Handshake(HelloError::Codec(e)))?;
    tx.try_push(&bytes)
        .map_err(|e| StartError::Handshake(HelloError::Push(e)))
}

/// Waits for the peer's hello until `deadline`, checking `alive` between waits; `timeout`
/// makes the error for a deadline that passed.
pub(crate) fn receive(
    rx: &mut Consumer,
    deadline: Instant,
    mut alive: impl FnMut() -> Result<(), StartError>,
    timeout: impl Fn() -> StartError,
) -> Result<Hello, StartError> {
    let mut buf = Vec::new();
    loop {
        match rx.pop_into(&mut buf) {
            Ok(true) => {
                let env: Envelope =
                    codec::decode(&buf).map_err(|e| StartError::Handshake(HelloError::Codec(e)))?;
                return match env.body {
                    Body::Hello(h) => Ok(h),
                    other => Err(StartError::Handshake(HelloError::NotAHello(format!(
                        "{other:?}"
                    )))),
                };
            }
            Ok(false) => {}
            Err(c) => return Err(StartError::Handshake(HelloError::Corrupt(c))),
        }
        alive()?;
        let now = Instant::now();
        if now >= deadline {
            return Err(timeout());
        }
        rx.wait_for_data(deadline.min(now + Duration::from_millis(20)), || false);
    }
}

/// Refuses a peer of another protocol version (as announced in its hello, or in the
/// segment header the runner wrote) or of another build.
pub(crate) fn check(
    theirs: &Hello,
    header_version: Option<u32>,
    cfg: &ChannelConfig,
) -> Result<(), StartError> {
    check_protocol(theirs, header_version, cfg)?;
    if theirs.build_id != cfg.build_id {
        return Err(StartError::BuildMismatch {
            ours: cfg.build_id.clone(),
            theirs: theirs.build_id.clone(),
        });
    }
    Ok(())
}

/// Refuses a peer of another protocol version only (a hub and its clients are different
/// programs, of one release).
pub(crate) fn check_protocol(
    theirs: &Hello,
    header_version: Option<u32>,
    cfg: &ChannelConfig,
) -> Result<(), StartError> {
    for version in header_version.into_iter().chain([theirs.protocol_version]) {
        if version != cfg.protocol_version {
            return Err(StartError::ProtocolMismatch {
                ours: cfg.protocol_version,
                theirs: version,
            });
        }
    }
    Ok(())
}
