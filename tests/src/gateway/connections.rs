//! The live connections and the state they share: each connection's outlet (its socket for
//! writing, its real-time bar streams, whether its link to IB is lost), the client ids still
//! taken, the link between the gateway and IB's servers (lost: 1100; restored: 1101 "data
//! lost" or 1102 "data maintained"), the market data farm (broken: 2103; OK again: 2104; the
//! streams open at a flap possibly dead for good) and outages of the gateway process (every
//! connection closed, new ones refused).
//!
//! Invariants:
//! - lock order is the registry, then one outlet at a time; a thread holding an outlet never
//!   takes the registry;
//! - after registration every frame to a connection is written under its outlet's lock, so
//!   frames never interleave, and a notice and a bar reach the wire in the order of the state
//!   changes that allowed them;
//! - no bar is written to a connection between its 1100 and its 1101/1102; a connection is
//!   sent 1101/1102 only if it was sent 1100, and once per loss;
//! - a 1101 ends every real-time stream of every connection before it is written: no bar
//!   follows on those request ids, ever;
//! - no real-time data is written to a connection between its 2103 and its 2104; a stream
//!   made dead by a flap never sends again, though it is not ended (only a cancel ends it);
//! - during an outage no connection is registered: one that finishes its handshake then is
//!   closed at once.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::wire::{codes, error_frame, texts};

/// What may be written to one connection, and what it has been told.
struct Outlet {
    socket: TcpStream,
    /// Request ids of its live real-time bar streams.
    streams: Vec<i32>,
    /// The link to IB is lost: its streams send nothing.
    link_lost: bool,
    /// It was sent 1100 and not yet 1101/1102.
    told_lost: bool,
    /// The market data farm is broken: its streams send nothing.
    farm_broken: bool,
    /// Streams that send nothing ever again, though live (a flap left them dead).
    dead: Vec<i32>,
    /// The gateway closed it.
    closed: bool,
}

impl Outlet {
    fn notice(&mut self, code: i32, text: &str) {
        // A failed write is the client gone: its reader ends the connection.
        let _ = self.socket.write_all(&error_frame(-1, code, text));
    }
}

/// A registered connection: every write to it after the handshake goes through here.
pub(super) struct Connection {
    outlet: Mutex<Outlet>,
}

/// What became of a bar offered to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Offer {
    /// Written.
    Sent,
    /// Not written: the link to IB is lost for now.
    Held,
    /// Not written, and none will be: the stream was cancelled or ended by a 1101, or the
    /// connection was closed.
    Ended,
}

impl Connection {
    /// Writes one or more whole frames.
    pub(super) fn write(&self, frames: &[u8]) -> io::Result<()> {
        lock(&self.outlet).socket.write_all(frames)
    }

    /// Starts real-time stream `id`.
    pub(super) fn open_stream(&self, id: i32) {
        lock(&self.outlet).streams.push(id);
    }

    /// Ends real-time stream `id` (the client cancelled it).
    pub(super) fn cancel_stream(&self, id: i32) {
        let mut o = lock(&self.outlet);
        o.streams.retain(|s| *s != id);
        o.dead.retain(|s| *s != id);
    }

    /// Whether stream `id` is live: not cancelled, nor ended by a 1101, nor closed with its
    /// connection.
    pub(super) fn stream_live(&self, id: i32) -> bool {
        let o = lock(&self.outlet);
        !o.closed && o.streams.contains(&id)
    }

    /// Writes `bar` for stream `id` if the stream is live, the link up, the farm OK and the
    /// stream not left dead by a flap.
    pub(super) fn offer_bar(&self, id: i32, bar: &[u8]) -> io::Result<Offer> {
        let mut o = lock(&self.outlet);
        if o.closed || !o.streams.contains(&id) {
            return Ok(Offer::Ended);
        }
        if o.link_lost || o.farm_broken || o.dead.contains(&id) {
            return Ok(Offer::Held);
        }
        o.socket.write_all(bar)?;
        Ok(Offer::Sent)
    }

    /// Closes the connection from the gateway's side; its reader sees the end.
    pub(super) fn close(&self) {
        let mut o = lock(&self.outlet);
        o.closed = true;
        o.streams.clear();
        let _ = o.socket.shutdown(Shutdown::Both);
    }

    /// Whether the gateway closed it.
    pub(super) fn closed_by_gateway(&self) -> bool {
        lock(&self.outlet).closed
    }
}

struct Registry {
    live: Vec<(Option<i32>, Arc<Connection>)>,
    /// The number of the current loss of the link to IB; `None` while it is up.
    lost: Option<u64>,
    losses: u64,
    /// The number of the current flap of the market data farm; `None` while it is OK.
    flap: Option<u64>,
    flaps: u64,
    /// New connections are refused until then.
    outage_until: Option<Instant>,
    /// Client ids of dead connections, and when each is free again.
    released: HashMap<i32, Instant>,
}

/// Every live connection, and the link and outage state they share.
pub(super) struct Connections(Mutex<Registry>);

impl Connections {
    pub(super) fn new() -> Connections {
        Connections(Mutex::new(Registry {
            live: Vec::new(),
            lost: None,
            losses: 0,
            flap: None,
            flaps: 0,
            outage_until: None,
            released: HashMap::new(),
        }))
    }

    /// Whether the gateway is in an outage (refusing connections).
    pub(super) fn in_outage(&self) -> bool {
        lock(&self.0)
            .outage_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// Whether `client_id` is held by a live connection, or by a dead one within its linger.
    pub(super) fn id_taken(&self, client_id: i32) -> bool {
        let r = lock(&self.0);
        r.live.iter().any(|(id, _)| *id == Some(client_id))
            || r.released
                .get(&client_id)
                .is_some_and(|free| Instant::now() < *free)
    }

    /// Registers a connection whose handshake is done, `None` (and the socket closed) during
    /// an outage. A connection registered while the link is lost is sent 1100 at once.
    pub(super) fn register(
        &self,
        socket: TcpStream,
        client_id: Option<i32>,
    ) -> Option<Arc<Connection>> {
        let mut r = lock(&self.0);
        if r.outage_until.is_some_and(|until| Instant::now() < until) {
            let _ = socket.shutdown(Shutdown::Both);
            return None;
        }
        let mut outlet = Outlet {
            socket,
            streams: Vec::new(),
            link_lost: r.lost.is_some(),
            told_lost: false,
            farm_broken: r.flap.is_some(),
            dead: Vec::new(),
            closed: false,
        };
        if outlet.farm_broken {
            outlet.notice(
                codes::MARKET_DATA_FARM_BROKEN,
                texts::MARKET_DATA_FARM_BROKEN,
            );
        }
        if outlet.link_lost {
            outlet.notice(codes::CONNECTIVITY_LOST, texts::CONNECTIVITY_LOST);
            outlet.told_lost = true;
        }
        let conn = Arc::new(Connection {
            outlet: Mutex::new(outlet),
        });
        r.live.push((client_id, conn.clone()));
        Some(conn)
    }

    /// The live connections of `client_id` that the gateway has not closed (a connection
    /// without a client id counts as client 0).
    pub(super) fn of_client(&self, client_id: i32) -> Vec<Arc<Connection>> {
        let r = lock(&self.0);
        r.live
            .iter()
            .filter(|(id, c)| id.unwrap_or(0) == client_id && !c.closed_by_gateway())
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Forgets a connection that ended; its client id stays taken for `linger`.
    pub(super) fn unregister(&self, conn: &Arc<Connection>, linger: Duration) {
        let mut r = lock(&self.0);
        let mut ended = None;
        r.live.retain(|(id, c)| {
            let this = Arc::ptr_eq(c, conn);
            if this {
                ended = *id;
            }
            !this
        });
        if let Some(id) = ended {
            r.released.insert(id, Instant::now() + linger);
        }
    }

    /// Loses the link to IB: 1100 to every connection not yet told, and no bars from now on.
    /// Returns the loss's number, for [`restore_link`](Self::restore_link).
    pub(super) fn lose_link(&self) -> u64 {
        let mut r = lock(&self.0);
        r.losses += 1;
        let loss = r.losses;
        r.lost = Some(loss);
        for (_, c) in &r.live {
            let mut o = lock(&c.outlet);
            o.link_lost = true;
            if !o.told_lost && !o.closed {
                o.notice(codes::CONNECTIVITY_LOST, texts::CONNECTIVITY_LOST);
                o.told_lost = true;
            }
        }
        loss
    }

    /// Restores the link lost by loss number `loss`, unless a later loss or an outage came
    /// since: with `data_lost`, every real-time stream ends and 1101 is sent; otherwise the
    /// streams resume and 1102 is sent.
    pub(super) fn restore_link(&self, loss: u64, data_lost: bool) {
        let mut r = lock(&self.0);
        if r.lost != Some(loss) {
            return;
        }
        r.lost = None;
        for (_, c) in &r.live {
            let mut o = lock(&c.outlet);
            o.link_lost = false;
            if data_lost {
                o.streams.clear();
            }
            if o.told_lost && !o.closed {
                if data_lost {
                    o.notice(
                        codes::CONNECTIVITY_RESTORED_DATA_LOST,
                        texts::CONNECTIVITY_RESTORED_DATA_LOST,
                    );
                } else {
                    o.notice(
                        codes::CONNECTIVITY_RESTORED_DATA_MAINTAINED,
                        texts::CONNECTIVITY_RESTORED_DATA_MAINTAINED,
                    );
                }
            }
            o.told_lost = false;
        }
    }

    /// Breaks the market data farm: 2103 to every connection, and no real-time data from now
    /// on; with `silent_streams`, the streams open now stay dead after the farm is OK again.
    /// Returns the flap's number, for [`restore_farm`](Self::restore_farm).
    pub(super) fn break_farm(&self, silent_streams: bool) -> u64 {
        let mut r = lock(&self.0);
        r.flaps += 1;
        let flap = r.flaps;
        r.flap = Some(flap);
        for (_, c) in &r.live {
            let mut o = lock(&c.outlet);
            if o.closed {
                continue;
            }
            if silent_streams {
                let open = o.streams.clone();
                o.dead.extend(open);
            }
            if !o.farm_broken {
                o.farm_broken = true;
                o.notice(
                    codes::MARKET_DATA_FARM_BROKEN,
                    texts::MARKET_DATA_FARM_BROKEN,
                );
            }
        }
        flap
    }

    /// The farm broken by flap number `flap` is OK again, unless a later flap came since:
    /// 2104 to every connection that was told 2103, and real-time data again (not on the dead
    /// streams).
    pub(super) fn restore_farm(&self, flap: u64) {
        let mut r = lock(&self.0);
        if r.flap != Some(flap) {
            return;
        }
        r.flap = None;
        for (_, c) in &r.live {
            let mut o = lock(&c.outlet);
            if o.farm_broken && !o.closed {
                o.notice(codes::MARKET_DATA_FARM_OK, texts::MARKET_DATA_FARM_OK);
            }
            o.farm_broken = false;
        }
    }

    /// An outage of the gateway process: every connection closed now, new ones refused for
    /// `lasts`. The gateway comes back with its link to IB up.
    pub(super) fn outage(&self, lasts: Duration) {
        let mut r = lock(&self.0);
        r.outage_until = Some(Instant::now() + lasts);
        r.lost = None;
        r.flap = None;
        for (_, c) in &r.live {
            c.close();
        }
    }
}

/// Loses the link to IB now and restores it after `lasts` (see
/// [`Connections::restore_link`]), from a thread of its own.
pub(super) fn lose_link_for(connections: &Arc<Connections>, lasts: Duration, data_lost: bool) {
    let loss = connections.lose_link();
    let connections = connections.clone();
    std::thread::spawn(move || {
        std::thread::sleep(lasts);
        connections.restore_link(loss, data_lost);
    });
}

/// Flaps the market data farm now for `lasts` (see [`Connections::break_farm`]), from a
/// thread of its own.
pub(super) fn flap_farm_for(connections: &Arc<Connections>, lasts: Duration, silent: bool) {
    let flap = connections.break_farm(silent);
    let connections = connections.clone();
    std::thread::spawn(move || {
        std::thread::sleep(lasts);
        connections.restore_farm(flap);
    });
}

/// Locks `m`, also after a thread panicked holding it (the gateway's state stays usable to
/// the end of a test).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
