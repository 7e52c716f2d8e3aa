//! Turning raw hardware energy counters into run-relative, monotonic energy: handles
//! wraparound (RAPL's `max_energy_range_uj`) and resets (an NVML driver reload).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jump {
    None,
    /// The counter passed its maximum and restarted at zero.
    Wrapped,
    /// The counter went back with no known range: taken as restarted from zero.
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    /// Energy since the first reading, in the counter's unit.
    pub total: u64,
    /// Whether the raw value moved since the previous reading.
    pub changed: bool,
    pub jump: Jump,
}

#[derive(Debug, Clone)]
pub struct CounterDiff {
    /// The value after which the counter wraps to 0, if it has one.
    max_range: Option<u64>,
    last_raw: Option<u64>,
    total: u64,
}

impl CounterDiff {
    pub fn new(max_range: Option<u64>) -> CounterDiff {
        CounterDiff {
            max_range: max_range.filter(|m| *m > 0),
            last_raw: None,
            total: 0,
        }
    }

    pub fn update(&mut self, raw: u64) -> Update {
        let Some(last) = self.last_raw.replace(raw) else {
            return Update {
                total: 0,
                changed: false,
                jump: Jump::None,
            };
        };
        let (delta, jump) = if raw >= last {
            (raw - last, Jump::None)
        } else {
            match self.max_range {
                Some(max) if last <= max => ((max - last) + raw, Jump::Wrapped),
                _ => (raw, Jump::Reset),
            }
        };
        self.total = self.total.saturating_add(delta);
        Update {
            total: self.total,
            changed: raw != last,
            jump,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reading_is_zero_then_deltas_accumulate() {
        let mut c = CounterDiff::new(None);
        assert_eq!(c.update(500).total, 0);
        let u = c.update(700);
        assert_eq!((u.total, u.changed, u.jump), (200, true, Jump::None));
        let u = c.update(700);
        assert_eq!((u.total, u.changed), (200, false));
    }

    #[test]
    fn wrap_adds_the_distance_to_the_maximum() {
        let mut c = CounterDiff::new(Some(1000));
        c.update(900);
        let u = c.update(50);
        assert_eq!((u.total, u.jump), (150, Jump::Wrapped));
    }

    #[test]
    fn reset_without_range_never_goes_negative() {
        let mut c = CounterDiff::new(None);
        c.update(10_000);
        c.update(12_000);
        let u = c.update(300);
        assert_eq!((u.total, u.jump), (2_300, Jump::Reset));
        assert_eq!(c.update(400).total, 2_400);
    }

    #[test]
    fn value_above_the_stated_range_is_a_reset_not_a_huge_wrap() {
        let mut c = CounterDiff::new(Some(1000));
        c.update(5000);
        let u = c.update(10);
        assert_eq!((u.total, u.jump), (10, Jump::Reset));
    }
}
