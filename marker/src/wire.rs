//! The 64-byte event the marker library sends in the socket fallback (little-endian on
//! the wire) and the eBPF programs put in the ring (native-endian `repr(C)`), decoded by
//! the probe: both laid out by `eco2ai_probe_common::offsets`.

use eco2ai_probe_common::{STEP_ARGS_FIELDS, STEP_ARGS_LEN, offsets as at};

/// `struct eco2ai_step` of the C header.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eco2aiStep {
    pub step: u64,
    pub samples: u64,
    pub tokens: u64,
    pub loss: f64,
    pub lr: f64,
    pub epoch: f64,
}

const _: () = {
    use std::mem::offset_of;
    assert!(std::mem::size_of::<Eco2aiStep>() == STEP_ARGS_LEN);
    assert!(offset_of!(Eco2aiStep, step) == STEP_ARGS_FIELDS[0].1);
    assert!(offset_of!(Eco2aiStep, samples) == STEP_ARGS_FIELDS[1].1);
    assert!(offset_of!(Eco2aiStep, tokens) == STEP_ARGS_FIELDS[2].1);
    assert!(offset_of!(Eco2aiStep, loss) == STEP_ARGS_FIELDS[3].1);
    assert!(offset_of!(Eco2aiStep, lr) == STEP_ARGS_FIELDS[4].1);
    assert!(offset_of!(Eco2aiStep, epoch) == STEP_ARGS_FIELDS[5].1);
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum EventKind {
    #[default]
    Begin = 1,
    End = 2,
    Eval = 3,
    /// Loss and learning rate of a step, logged after its end.
    Log = 4,
    /// The rank's own compute of its open step ended; it now waits on the step's
    /// collective (`eco2ai_step_sync`).
    Sync = 5,
}

pub const EVENT_LEN: usize = eco2ai_probe_common::MARKER_EVENT_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Event {
    pub kind: EventKind,
    pub pid: u32,
    /// CLOCK_MONOTONIC, taken in the caller's process.
    pub ts_ns: i64,
    pub step: u64,
    pub samples: u64,
    pub tokens: u64,
    /// The step's loss, or the eval loss for `Eval`.
    pub loss: f64,
    pub lr: f64,
    pub epoch: f64,
}

impl Event {
    /// The wire form: little-endian, at the common offsets.
    pub fn encode(&self) -> [u8; EVENT_LEN] {
        let mut b = [0u8; EVENT_LEN];
        b[at::KIND..at::KIND + 4].copy_from_slice(&(self.kind as u32).to_le_bytes());
        b[at::PID..at::PID + 4].copy_from_slice(&self.pid.to_le_bytes());
        let words: [(usize, u64); 7] = [
            (at::TS_NS, self.ts_ns as u64),
            (at::STEP, self.step),
            (at::SAMPLES, self.samples),
            (at::TOKENS, self.tokens),
            (at::LOSS, self.loss.to_bits()),
            (at::LR, self.lr.to_bits()),
            (at::EPOCH, self.epoch.to_bits()),
        ];
        for (o, w) in words {
            b[o..o + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// A socket datagram (little-endian). None for the wrong size or an unknown kind.
    pub fn decode(b: &[u8]) -> Option<Event> {
        Event::decode_with(b, u32::from_le_bytes, u64::from_le_bytes)
    }

    /// A ring-buffer event, written by the eBPF programs in the machine's own byte order.
    pub fn decode_native(b: &[u8]) -> Option<Event> {
        Event::decode_with(b, u32::from_ne_bytes, u64::from_ne_bytes)
    }

    fn decode_with(
        b: &[u8],
        u32_from: fn([u8; 4]) -> u32,
        u64_from: fn([u8; 8]) -> u64,
    ) -> Option<Event> {
        if b.len() != EVENT_LEN {
            return None;
        }
        let u32_at = |i: usize| u32_from([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64_from(a)
        };
        let kind = match u32_at(at::KIND) {
            1 => EventKind::Begin,
            2 => EventKind::End,
            3 => EventKind::Eval,
            4 => EventKind::Log,
            5 => EventKind::Sync,
            _ => return None,
        };
        Some(Event {
            kind,
            pid: u32_at(at::PID),
            ts_ns: u64_at(at::TS_NS) as i64,
            step: u64_at(at::STEP),
            samples: u64_at(at::SAMPLES),
            tokens: u64_at(at::TOKENS),
            loss: f64::from_bits(u64_at(at::LOSS)),
            lr: f64::from_bits(u64_at(at::LR)),
            epoch: f64::from_bits(u64_at(at::EPOCH)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let e = Event {
            kind: EventKind::End,
            pid: 7,
            ts_ns: 123,
            step: 9,
            samples: 16,
            tokens: 4096,
            loss: 2.5,
            lr: 1e-4,
            epoch: 0.5,
        };
        assert_eq!(Event::decode(&e.encode()), Some(e));
        let sync = Event {
            kind: EventKind::Sync,
            ..e
        };
        assert_eq!(Event::decode(&sync.encode()), Some(sync));
        let kinds = [
            (EventKind::Begin, eco2ai_probe_common::KIND_BEGIN),
            (EventKind::End, eco2ai_probe_common::KIND_END),
            (EventKind::Eval, eco2ai_probe_common::KIND_EVAL),
            (EventKind::Log, eco2ai_probe_common::KIND_LOG),
            (EventKind::Sync, eco2ai_probe_common::KIND_SYNC),
        ];
        for (k, n) in kinds {
            assert_eq!(k as u32, n, "{k:?}");
        }
        assert_eq!(Event::decode(&[0u8; 10]), None);
        let mut bad = e.encode();
        bad[0] = 9;
        assert_eq!(Event::decode(&bad), None);
    }
}
