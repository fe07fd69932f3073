//! The hot message's fixed layout: a live bar event crosses the ring as 56 bytes (one 64-byte
//! frame, a cache line) instead of a codec envelope, and is read back by a few loads.
//!
//! Layout, little-endian: `sub: u32`, `class: u32` (1: a bar event), `time: i64`, then
//! `open`, `high`, `low`, `close`, `volume` as `f64`. Only an event envelope (`id` 0) takes
//! it; every other message goes through the codec. Bytes of another length or class are not
//! a fixed layout ([`Wire::from_fixed`] says `None`, and the channel treats the frame as
//! corruption).

#![forbid(unsafe_code)]

use super::{Bar, Body, Envelope, Event};
use crate::codec::{Wire, FIXED_MAX};

/// Bytes of a bar event's fixed layout.
pub const BAR_FIXED_LEN: usize = 56;
/// The class word of a bar event's fixed layout.
const CLASS_BAR: u32 = 1;

impl Wire for Envelope {
    #[inline]
    fn to_fixed(&self, out: &mut [u8; FIXED_MAX]) -> Option<usize> {
        let Envelope {
            id: 0,
            body: Body::Event(Event::Bar { sub, bar }),
        } = self
        else {
            return None;
        };
        out[0..4].copy_from_slice(&sub.to_le_bytes());
        out[4..8].copy_from_slice(&CLASS_BAR.to_le_bytes());
        out[8..16].copy_from_slice(&bar.time.to_le_bytes());
        let prices = [bar.open, bar.high, bar.low, bar.close, bar.volume];
        for (k, v) in prices.iter().enumerate() {
            out[16 + 8 * k..24 + 8 * k].copy_from_slice(&v.to_le_bytes());
        }
        Some(BAR_FIXED_LEN)
    }

    #[inline]
    fn from_fixed(bytes: &[u8]) -> Option<Self> {
        let b: &[u8; BAR_FIXED_LEN] = bytes.try_into().ok()?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            w
        };
        let half = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if half(4) != CLASS_BAR {
            return None;
        }
        let price = |k: usize| f64::from_le_bytes(word(16 + 8 * k));
        Some(Envelope {
            id: 0,
            body: Body::Event(Event::Bar {
                sub: half(0),
                bar: Bar {
                    time: i64::from_le_bytes(word(8)),
                    open: price(0),
                    high: price(1),
                    low: price(2),
                    close: price(3),
                    volume: price(4),
                },
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ConnectionStatus, Request};

    fn bar_event(id: u64, sub: u32) -> Envelope {
        Envelope {
            id,
            body: Body::Event(Event::Bar {
                sub,
                bar: Bar {
                    time: -5,
                    open: f64::MIN_POSITIVE,
                    high: f64::MAX,
                    low: -0.0,
                    close: 1.5,
                    volume: f64::NAN,
                },
            }),
        }
    }

    fn same(a: &Envelope, b: &Envelope) -> bool {
        // NaN volume: compare the encodings, bit for bit.
        crate::codec::encode(a).ok() == crate::codec::encode(b).ok()
    }

    #[test]
    fn a_bar_event_goes_through_its_fixed_layout_and_back_bit_for_bit() {
        let mut buf = [0u8; FIXED_MAX];
        for sub in [0, 7, u32::MAX] {
            let env = bar_event(0, sub);
            let n = env
                .to_fixed(&mut buf)
                .expect("a bar event has a fixed layout");
            assert_eq!(n, BAR_FIXED_LEN);
            let back = Envelope::from_fixed(&buf[..n]).expect("reads back");
            assert!(same(&back, &env), "{back:?}");
        }
    }

    #[test]
    fn every_other_message_goes_through_the_codec() {
        let mut buf = [0u8; FIXED_MAX];
        let others = [
            bar_event(3, 1),
            Envelope {
                id: 0,
                body: Body::Event(Event::Connection(ConnectionStatus::Connected)),
            },
            Envelope {
                id: 0,
                body: Body::Request(Request::Connect),
            },
        ];
        for env in others {
            assert_eq!(env.to_fixed(&mut buf), None, "{env:?}");
        }
    }

    #[test]
    fn bytes_of_another_length_or_class_are_not_a_fixed_layout() {
        let mut buf = [0u8; FIXED_MAX];
        let n = bar_event(0, 2).to_fixed(&mut buf).unwrap_or(0);
        assert_eq!(Envelope::from_fixed(&buf[..n - 8]), None);
        assert_eq!(Envelope::from_fixed(&buf[..n + 8]), None);
        assert_eq!(Envelope::from_fixed(&[]), None);
        for class in [0u32, 2, u32::MAX] {
            buf[4..8].copy_from_slice(&class.to_le_bytes());
            assert_eq!(Envelope::from_fixed(&buf[..n]), None, "class {class}");
        }
    }
}
