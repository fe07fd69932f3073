//! A ring's control block: the one place both processes write. The producer writes only its
//! line (`tail`), the consumer only its line (`head`); each doorbell has a line of its own.
//! Everything here is `#[repr(C)]` atomics, so all-zero bytes are a valid empty ring and any
//! bytes a hostile peer writes are still valid values (which the ends then validate).
//!
//! Invariants: counters are not kept here: each end counts what it did in private memory, so a peer that
//! scribbles over the segment cannot make this side report figures it never produced.

#![forbid(unsafe_code)]

use super::cache_padded::CachePadded;
use crate::doorbell::Bell;
use crate::sync::AtomicU64;

/// Written only by the producer.
#[repr(C)]
pub(crate) struct ProducerLine {
    /// Position one past the last published frame. In `head ..= head + capacity`.
    pub(crate) tail: AtomicU64,
}

/// Written only by the consumer.
#[repr(C)]
pub(crate) struct ConsumerLine {
    /// Position of the first frame not yet consumed. In `tail - capacity ..= tail`.
    pub(crate) head: AtomicU64,
}

/// The control block of one ring. All-zero bytes are a valid empty ring.
#[repr(C)]
pub(crate) struct RingControl {
    pub(crate) producer: CachePadded<ProducerLine>,
    pub(crate) consumer: CachePadded<ConsumerLine>,
    /// The consumer sleeps here when the ring is empty.
    pub(crate) data_bell: CachePadded<Bell>,
    /// The producer sleeps here when the ring is full.
    pub(crate) space_bell: CachePadded<Bell>,
}

impl RingControl {
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        RingControl {
            producer: CachePadded::new(ProducerLine {
                tail: AtomicU64::new(0),
            }),
            consumer: CachePadded::new(ConsumerLine {
                head: AtomicU64::new(0),
            }),
            data_bell: CachePadded::new(Bell::new()),
            space_bell: CachePadded::new(Bell::new()),
        }
    }

    /// Wakes every sleeper of this ring, on either side (used when a peer is declared gone).
    #[cfg(not(loom))]
    pub(crate) fn wake_all(&self) {
        self.data_bell.wake_all();
        self.space_bell.wake_all();
    }
}

/// What one end of a ring did, counted in its own process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Frames published (producer) or taken (consumer; a batch found corrupt counts none of
    /// its frames).
    pub frames: u64,
    /// Payload bytes published or taken.
    pub bytes: u64,
    /// Pushes refused because the ring was full (producer only).
    pub full_events: u64,
    /// Futex wakes this end issued to its peer.
    pub wakes: u64,
    /// Times this end went to sleep on its doorbell waiting for the peer (consumer only; the
    /// hello exchange's waits included): each ended with a wake from the peer, a timeout, or
    /// at once if the peer had published meanwhile.
    pub sleeps: u64,
}
