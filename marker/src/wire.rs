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
    /// A span of a named phase begins (`eco2ai_phase_begin`); the name in `phase_name`.
    PhaseBegin = 6,
    /// The innermost open span of that name ends (`eco2ai_phase_end`).
    PhaseEnd = 7,
}

impl EventKind {
    /// Whether the event carries a phase name in place of samples, tokens, loss and lr.
    pub fn is_phase(self) -> bool {
        matches!(self, EventKind::PhaseBegin | EventKind::PhaseEnd)
    }
}

/// Bytes of a phase name in an event (`eco2ai_trace::phase::NAME_MAX_BYTES`).
pub const PHASE_NAME_LEN: usize = at::PHASE_NAME_LEN;

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
    /// For phase events samples, tokens, loss and lr hold the name instead
    /// (`phase_name`, `set_phase_name`).
    pub loss: f64,
    pub lr: f64,
    pub epoch: f64,
}

impl Event {
    /// The 32 name bytes of a phase event, as they lie at `offsets::PHASE_NAME` on the
    /// wire: the words samples, tokens, loss and lr, each little-endian.
    pub fn phase_name(&self) -> [u8; PHASE_NAME_LEN] {
        let words = [
            self.samples,
            self.tokens,
            self.loss.to_bits(),
            self.lr.to_bits(),
        ];
        let mut out = [0u8; PHASE_NAME_LEN];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Puts `name` (packed: `eco2ai_trace::phase::pack`) where `phase_name` reads it.
    pub fn set_phase_name(&mut self, name: &[u8; PHASE_NAME_LEN]) {
        let word = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&name[i * 8..i * 8 + 8]);
            u64::from_le_bytes(a)
        };
        self.samples = word(0);
        self.tokens = word(1);
        self.loss = f64::from_bits(word(2));
        self.lr = f64::from_bits(word(3));
    }

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
            6 => EventKind::PhaseBegin,
            7 => EventKind::PhaseEnd,
            _ => return None,
        };
        let mut ev = Event {
            kind,
            pid: u32_at(at::PID),
            ts_ns: u64_at(at::TS_NS) as i64,
            step: u64_at(at::STEP),
            samples: u64_at(at::SAMPLES),
            tokens: u64_at(at::TOKENS),
            loss: f64::from_bits(u64_at(at::LOSS)),
            lr: f64::from_bits(u64_at(at::LR)),
            epoch: f64::from_bits(u64_at(at::EPOCH)),
        };
        if kind.is_phase() {
            // A name is bytes in order on the wire and in the ring alike, whatever the
            // byte order the words were read in.
            let mut name = [0u8; PHASE_NAME_LEN];
            name.copy_from_slice(&b[at::PHASE_NAME..at::PHASE_NAME + PHASE_NAME_LEN]);
            ev.set_phase_name(&name);
        }
        Some(ev)
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
            (EventKind::PhaseBegin, eco2ai_probe_common::KIND_PHASE_BEGIN),
            (EventKind::PhaseEnd, eco2ai_probe_common::KIND_PHASE_END),
        ];
        for (k, n) in kinds {
            assert_eq!(k as u32, n, "{k:?}");
        }
        assert_eq!(Event::decode(&[0u8; 10]), None);
        let mut bad = e.encode();
        bad[0] = 9;
        assert_eq!(Event::decode(&bad), None);
    }

    #[test]
    fn a_phase_name_lies_in_order_at_its_offset_in_both_byte_orders() {
        let mut name = [0u8; PHASE_NAME_LEN];
        name[..10].copy_from_slice(b"checkpoint");
        let mut e = Event {
            kind: EventKind::PhaseBegin,
            pid: 7,
            ts_ns: 123,
            ..Event::default()
        };
        e.set_phase_name(&name);
        assert_eq!(e.phase_name(), name);
        let wire = e.encode();
        assert_eq!(
            &wire[at::PHASE_NAME..at::PHASE_NAME + PHASE_NAME_LEN],
            &name
        );
        assert_eq!(&wire[at::STEP..at::STEP + 8], &[0u8; 8]);
        let back = Event::decode(&wire).unwrap();
        assert_eq!(back.kind, EventKind::PhaseBegin);
        assert_eq!(back.phase_name(), name);
        // The ring holds the same bytes (the uprobe stores native words that the C
        // function made from the bytes in order): the native decoder finds them too.
        assert_eq!(Event::decode_native(&wire).unwrap().phase_name(), name);
        let end = Event {
            kind: EventKind::PhaseEnd,
            ..back
        };
        assert_eq!(Event::decode(&end.encode()).unwrap().phase_name(), name);
        assert_eq!(
            Event::decode(&end.encode()).unwrap().kind,
            EventKind::PhaseEnd
        );
    }
}
