//! The remote_write 1.0 payload: a protobuf `prometheus.WriteRequest`, encoded by hand
//! (four small messages) and snappy-compressed by the caller.
//!
//! WriteRequest { repeated TimeSeries timeseries = 1; }
//! TimeSeries { repeated Label labels = 1; repeated Sample samples = 2; }
//! Label { string name = 1; string value = 2; }  Sample { double value = 1; int64 timestamp = 2; }

use std::collections::HashMap;

use crate::{Kind, Sink};

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u8, b: &[u8]) {
    out.push(field << 3 | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Series {
    /// Encoded Label messages (with their field tags), sorted by name, `__name__` first.
    labels: Vec<u8>,
    samples: Vec<(f64, i64)>,
}

/// Gathers samples per series for one request; `ts_ms` is the instant being rendered.
#[derive(Default)]
pub struct WriteRequestSink {
    pub ts_ms: i64,
    series: Vec<Series>,
    index: HashMap<String, usize>,
    key: String,
    pub samples: usize,
}

impl Sink for WriteRequestSink {
    fn family(&mut self, _name: &str, _kind: Kind, _help: &str) {}

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        // Each part length-prefixed: no name or label (a project called "a\u{1}b", say)
        // can spell another series' key (found by fuzzing with separator characters).
        self.key.clear();
        for part in std::iter::once(name).chain(labels.iter().flat_map(|(k, v)| [*k, *v])) {
            use std::fmt::Write as _;
            let _ = write!(self.key, "{}:", part.len());
            self.key.push_str(part);
        }
        let i = match self.index.get(self.key.as_str()) {
            Some(&i) => i,
            None => {
                let full = format!("hf_training_{name}");
                let mut sorted: Vec<(&str, &str)> = vec![("__name__", &full)];
                // Prometheus drops empty label values; sending them would make two
                // spellings of one series.
                sorted.extend(labels.iter().copied().filter(|(_, v)| !v.is_empty()));
                sorted.sort_by(|a, b| a.0.cmp(b.0));
                let mut enc = Vec::new();
                for (k, v) in sorted {
                    let mut l = Vec::with_capacity(k.len() + v.len() + 4);
                    bytes_field(&mut l, 1, k.as_bytes());
                    bytes_field(&mut l, 2, v.as_bytes());
                    bytes_field(&mut enc, 1, &l);
                }
                self.series.push(Series {
                    labels: enc,
                    samples: Vec::new(),
                });
                self.index.insert(self.key.clone(), self.series.len() - 1);
                self.series.len() - 1
            }
        };
        self.series[i].samples.push((value, self.ts_ms));
        self.samples += 1;
    }
}

impl WriteRequestSink {
    /// The encoded WriteRequest (uncompressed); empties the sink.
    pub fn take_request(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.samples * 12 + self.series.len() * 96);
        let mut ts = Vec::new();
        for s in self.series.drain(..) {
            ts.clear();
            ts.extend_from_slice(&s.labels);
            for (v, t) in s.samples {
                let mut m = [0u8; 20];
                m[0] = 1 << 3 | 1; // value: fixed64
                m[1..9].copy_from_slice(&v.to_le_bytes());
                m[9] = 2 << 3; // timestamp: varint
                let mut tail = Vec::with_capacity(10);
                varint(&mut tail, t as u64);
                let n = 10 + tail.len();
                m[10..n].copy_from_slice(&tail);
                bytes_field(&mut ts, 2, &m[..n]);
            }
            bytes_field(&mut out, 1, &ts);
        }
        self.index.clear();
        self.samples = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_base_128() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
    }

    #[test]
    fn a_request_has_sorted_labels_and_samples() {
        let mut s = WriteRequestSink {
            ts_ms: 1000,
            ..Default::default()
        };
        s.sample("loss", &[("project_name", "p"), ("model_name", "")], 0.5);
        s.ts_ms = 2000;
        s.sample("loss", &[("project_name", "p"), ("model_name", "")], 0.25);
        let r = s.take_request();
        // One TimeSeries (field 1), holding __name__ then project_name (model_name empty).
        assert_eq!(r[0], 0x0a);
        let text = String::from_utf8_lossy(&r);
        let name = text.find("__name__").unwrap();
        let project = text.find("project_name").unwrap();
        assert!(name < project);
        assert!(!text.contains("model_name"));
        assert_eq!(
            r.windows(8).filter(|w| *w == 0.25f64.to_le_bytes()).count(),
            1
        );
        assert_eq!(s.samples, 0);
    }
}
