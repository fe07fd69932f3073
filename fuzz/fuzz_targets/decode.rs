//! The message decoder over arbitrary frame payloads.
#![no_main]

use bridge::protocol::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = bridge::codec::decode::<Envelope>(data) {
        // Whatever decodes must encode back to the same bytes.
        assert_eq!(bridge::codec::encode(&env).ok().as_deref(), Some(data));
    }
});
