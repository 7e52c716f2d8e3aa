//! Phases of a run: what a process is doing besides training steps. A step belongs to
//! the phase its process was in when it began; `train` is the default and needs no
//! marking. The name rule is stated here once: the marker library cleans a name to it,
//! the probe refuses what breaks it, the analyzer and the live metrics key on it.

/// The default phase of a step: what samples/kWh counts.
pub const TRAIN: &str = "train";
/// The phase the Trainer callback marks around an evaluation.
pub const EVAL: &str = "eval";
/// The phase the Trainer callback marks around a checkpoint save.
pub const CHECKPOINT: &str = "checkpoint";
/// Longest phase name, in bytes: it travels in the 32 payload bytes of a marker event.
pub const NAME_MAX_BYTES: usize = 32;
/// Distinct phase names the live metrics label; later names share `OTHER`.
pub const MAX_LIVE_PHASES: usize = 16;
/// The live label of phases past `MAX_LIVE_PHASES`.
pub const OTHER: &str = "other";

/// Whether `name` is a phase name: 1 to 32 bytes of `[A-Za-z0-9_.:-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= NAME_MAX_BYTES && name.bytes().all(name_byte)
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
}

/// `raw` made a phase name: other bytes become `_`, cut at 32 bytes; None when empty.
pub fn clean_name(raw: &[u8]) -> Option<String> {
    let cut = &raw[..raw.len().min(NAME_MAX_BYTES)];
    if cut.is_empty() {
        return None;
    }
    Some(
        cut.iter()
            .map(|&b| if name_byte(b) { b as char } else { '_' })
            .collect(),
    )
}

/// A name packed into the 32 payload bytes of a marker event, NUL-padded.
pub fn pack(name: &str) -> [u8; NAME_MAX_BYTES] {
    let mut out = [0u8; NAME_MAX_BYTES];
    let n = name.len().min(NAME_MAX_BYTES);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// The name packed by `pack`: up to the first NUL; None unless it is a valid name.
pub fn unpack(bytes: &[u8; NAME_MAX_BYTES]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(NAME_MAX_BYTES);
    let s = std::str::from_utf8(&bytes[..end]).ok()?;
    valid_name(s).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_one_rule() {
        for ok in [
            "eval",
            "checkpoint",
            "warm-up",
            "epoch:3",
            "a.b_c",
            &"x".repeat(32),
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "with space", "ü", "a/b", &"x".repeat(33), "nul\0"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn cleaning_makes_a_valid_name_or_none() {
        assert_eq!(clean_name(b"data loader"), Some("data_loader".into()));
        assert_eq!(clean_name(&[b'a'; 40]).map(|s| s.len()), Some(32));
        assert_eq!(clean_name(b""), None);
        let c = clean_name("évál".as_bytes()).unwrap();
        assert!(valid_name(&c), "{c}");
    }

    #[test]
    fn packing_round_trips_and_refuses_garbage() {
        for name in ["eval", &"y".repeat(32)] {
            assert_eq!(unpack(&pack(name)).as_deref(), Some(name));
        }
        assert_eq!(unpack(&[0u8; 32]), None);
        let mut junk = [b'a'; 32];
        junk[3] = b' ';
        assert_eq!(unpack(&junk), None);
    }
}
