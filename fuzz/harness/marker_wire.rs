//! Fuzz harness for the marker wire decoder (`eco2ai_marker::wire::Event::decode`):
//! shared by the fuzz target and the corpus regression test.

use eco2ai_marker::wire::{EVENT_LEN, Event};

/// Decodes `data`; a decoded event must encode back to the same bytes, and anything
/// but 64 bytes must be refused.
pub fn run(data: &[u8]) {
    let decoded = Event::decode(data);
    if data.len() != EVENT_LEN {
        assert!(decoded.is_none(), "decoded a {}-byte message", data.len());
        return;
    }
    if let Some(e) = decoded {
        assert_eq!(&e.encode()[..], data, "decode/encode round trip differs");
    }
}
