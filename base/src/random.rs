//! Deterministic pseudo-random numbers, without dependencies: a 64-bit mixing function (the
//! simulated market's hash) and a xorshift generator (the soak's chaos, and the tests' random
//! faults).
//!
//! Invariants: both are pure functions of their input or seed, the same on every platform and
//! build, so a seed reproduces a run. Neither is fit for anything secret.

/// SplitMix64's step: a well-spread 64-bit hash of `x`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Marsaglia's xorshift64 (shifts 13, 7, 17). Its state is never zero.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator seeded with `seed` (zero, which would stay zero, is replaced by a fixed
    /// non-zero seed).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The next number modulo `n` (`n` = 0 counts as 1).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first three numbers of xorshift64 (13, 7, 17) seeded with 1.
    const FROM_ONE: [u64; 3] = [
        1_082_269_761,
        1_152_992_998_833_853_505,
        11_177_516_664_432_764_457,
    ];

    #[test]
    fn xorshift_follows_its_published_sequence() {
        let mut x = XorShift::new(1);
        let first: Vec<u64> = (0..3).map(|_| x.next_u64()).collect();
        assert_eq!(first, FROM_ONE);
        let mut a = XorShift::new(42);
        let mut b = XorShift::new(42);
        for _ in 0..1000 {
            let n = a.below(10);
            assert!(n < 10);
            assert_eq!(n, b.below(10));
        }
    }

    #[test]
    fn a_zero_seed_still_moves() {
        let mut x = XorShift::new(0);
        assert_ne!(x.next_u64(), 0);
        assert_eq!(x.below(0), 0);
    }

    #[test]
    fn mix_spreads_neighbours_apart() {
        assert_ne!(mix(0), mix(1));
        assert!((mix(1) ^ mix(2)).count_ones() > 16);
    }
}
