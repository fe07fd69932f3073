//! The names, ids and payloads the hub publishes under.

use super::*;
use bridge::protocol::Bar;

#[test]
fn a_hubs_stream_subjects_and_ids_are_fixed_by_its_name() {
    assert_eq!(stream_name("desk-1"), "IBBRIDGE_desk-1");
    assert_ne!(stream_name("Desk"), stream_name("desk"));
    assert_eq!(stream_name("a.b c"), "IBBRIDGE_a_b_c");
    assert_eq!(symbol_token("BRK.B"), "BRK_B");
    assert_eq!(symbol_token("SPY"), "SPY");
    assert_eq!(subject_prefix("desk"), "ibbridge.desk");
    assert!(valid_hub_token("desk_2"));
    for bad in ["", "a.b", "a*", "a>", "a b"] {
        assert!(!valid_hub_token(bad), "{bad:?}");
    }
    assert_eq!(bar_id("SPY", 60, 1_700_000_040), "SPY.60.1700000040");
}

#[test]
fn a_published_bar_is_json_that_reads_back() {
    let bar = Bar {
        time: 1_700_000_040,
        open: 1.5,
        high: 2.0,
        low: 1.0,
        close: 1.75,
        volume: 300.0,
    };
    let text = serde_json::to_string(&PublishedBar::of(60, &bar)).unwrap_or_default();
    assert_eq!(
        text,
        "{\"bar_seconds\":60,\"time\":1700000040,\"open\":1.5,\"high\":2.0,\"low\":1.0,\"close\":1.75,\"volume\":300.0}"
    );
    let back: PublishedBar = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.bar(), bar);
}
