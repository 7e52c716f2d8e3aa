//! The 64-byte little-endian event the marker library sends in the socket fallback;
//! decoded by the probe.

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

const _: () = assert!(std::mem::size_of::<Eco2aiStep>() == 48);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum EventKind {
    #[default]
    Begin = 1,
    End = 2,
    Eval = 3,
    /// Loss and learning rate of a step, logged after its end.
    Log = 4,
}

pub const EVENT_LEN: usize = 64;

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
    pub fn encode(&self) -> [u8; EVENT_LEN] {
        let mut b = [0u8; EVENT_LEN];
        b[0..4].copy_from_slice(&(self.kind as u32).to_le_bytes());
        b[4..8].copy_from_slice(&self.pid.to_le_bytes());
        let words: [u64; 7] = [
            self.ts_ns as u64,
            self.step,
            self.samples,
            self.tokens,
            self.loss.to_bits(),
            self.lr.to_bits(),
            self.epoch.to_bits(),
        ];
        for (i, w) in words.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// None for a message of the wrong size or an unknown kind.
    pub fn decode(b: &[u8]) -> Option<Event> {
        if b.len() != EVENT_LEN {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let kind = match u32_at(0) {
            1 => EventKind::Begin,
            2 => EventKind::End,
            3 => EventKind::Eval,
            4 => EventKind::Log,
            _ => return None,
        };
        Some(Event {
            kind,
            pid: u32_at(4),
            ts_ns: u64_at(8) as i64,
            step: u64_at(16),
            samples: u64_at(24),
            tokens: u64_at(32),
            loss: f64::from_bits(u64_at(40)),
            lr: f64::from_bits(u64_at(48)),
            epoch: f64::from_bits(u64_at(56)),
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
        assert_eq!(Event::decode(&[0u8; 10]), None);
        let mut bad = e.encode();
        bad[0] = 9;
        assert_eq!(Event::decode(&bad), None);
    }
}
