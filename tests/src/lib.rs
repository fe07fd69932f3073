//! Helpers shared by the cross-process tests (here and the runner's) and their helper
//! processes: the frames of the stream tests, the connection settings, the processes a test
//! starts ([`process`]) and the fake TWS gateway ([`gateway`]).
#![forbid(unsafe_code)]

pub mod gateway;
pub mod process;

/// The tests' seeded random numbers (the soak's generator).
pub use base::random::XorShift;
/// Signals to processes (SIGKILL, SIGSTOP).
pub use base::signal::{send as signal, ProcessSignal};
pub use process::{alive, kill_and_wait, recorded, segments_of, within};

use std::time::Duration;

use bridge::channel::ChannelConfig;

/// Deterministic frame `seq` of stream `seed`: mostly 8 to 64 bytes, one in a hundred between
/// 1 KiB and 16 KiB, so that wraps and large frames are crossed often. The first 8 bytes are
/// the sequence number; the rest is derived from it, so any loss, duplication, reordering or
/// damage shows.
pub fn frame(seed: u64, seq: u64, out: &mut Vec<u8>) {
    let mut x = seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    let len = if x.is_multiple_of(100) {
        1024 + (x >> 8) as usize % (16 * 1024 - 1024 + 1)
    } else {
        8 + (x >> 8) as usize % 57
    };
    out.clear();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend((8..len).map(|i| (x as usize).wrapping_add(i * 7) as u8));
}

/// The connection settings the tests use on both sides.
pub fn config() -> ChannelConfig {
    ChannelConfig {
        hang_timeout: Duration::from_secs(5),
        build_id: "bridge-tests".into(),
        ..ChannelConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_deterministic_and_sized_as_promised() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut large = 0;
        for seq in 0..10_000 {
            frame(1, seq, &mut a);
            frame(1, seq, &mut b);
            assert_eq!(a, b);
            assert!((8..=16 * 1024).contains(&a.len()));
            large += usize::from(a.len() >= 1024);
        }
        assert!((50..200).contains(&large), "{large} large frames");
    }
}
