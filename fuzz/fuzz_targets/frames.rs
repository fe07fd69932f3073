//! The frame reader over arbitrary ring memory: positions and data area from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bridge::ring::fuzzing::read_frames(data);
});
