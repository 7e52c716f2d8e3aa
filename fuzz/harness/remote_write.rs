//! Fuzz harness for the remote_write encoder (`proto::WriteRequestSink`): shared by the
//! fuzz target and the corpus regression test in analyze. Both name the module
//! `crate::proto` (eco2ai_metrics::proto).
//!
//! The input is a little program: each sample is `[op][name][n labels][k v]...[8 bytes
//! value]`, strings length-prefixed by one byte; op bit 0 moves the clock, bit 1 ends
//! the request. Every request is decoded back and checked against what was sent.

use eco2ai_metrics::Sink;

use crate::proto::WriteRequestSink;

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(a)
    }

    fn text(&mut self) -> Option<String> {
        let n = self.byte()?;
        Some(String::from_utf8_lossy(self.take(usize::from(n) % 64)?).into_owned())
    }
}

/// One sample as sent: (name, labels, value bits, ts_ms).
type Sent = (String, Vec<(String, String)>, u64, i64);

pub fn run(data: &[u8]) {
    let mut c = Cursor(data);
    let mut sink = WriteRequestSink::default();
    let mut sent: Vec<Sent> = Vec::new();
    while let Some(op) = c.byte() {
        let Some(sample) = read_sample(&mut c) else {
            break;
        };
        if op & 1 == 1 {
            let step = i64::from(op >> 2) - 32;
            sink.ts_ms = sink.ts_ms.wrapping_add(step.wrapping_mul(1 << (op & 0x3c)));
        }
        let (name, labels, bits) = sample;
        let refs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (&**k, &**v)).collect();
        sink.sample(&name, &refs, f64::from_bits(bits));
        sent.push((name, labels, bits, sink.ts_ms));
        if op & 2 == 2 {
            check(&sink.take_request(), &std::mem::take(&mut sent));
        }
    }
    check(&sink.take_request(), &sent);
}

fn read_sample(c: &mut Cursor) -> Option<(String, Vec<(String, String)>, u64)> {
    let name = c.text()?;
    let n = c.byte()? % 8;
    let mut labels = Vec::new();
    for _ in 0..n {
        labels.push((c.text()?, c.text()?));
    }
    let bits = u64::from_le_bytes(c.take(8)?.try_into().ok()?);
    Some((name, labels, bits))
}

/// Decodes the WriteRequest and compares it with the samples sent since the last one.
fn check(req: &[u8], sent: &[Sent]) {
    let mut got: Vec<(Vec<(String, String)>, u64, i64)> = Vec::new();
    for ts in fields(req, 1) {
        let mut labels = Vec::new();
        for l in fields(ts, 1) {
            let name = fields(l, 1).next().unwrap_or_default();
            let value = fields(l, 2).next().unwrap_or_default();
            labels.push((utf8(name), utf8(value)));
        }
        assert!(
            labels.windows(2).all(|w| w[0].0 <= w[1].0),
            "labels not sorted"
        );
        assert!(
            labels.iter().all(|(_, v)| !v.is_empty()),
            "empty label value sent"
        );
        for s in fields(ts, 2) {
            got.push((labels.clone(), sample_value(s), sample_ts(s)));
        }
    }
    assert_eq!(got.len(), sent.len(), "samples lost or invented");
    for (name, labels, bits, ts_ms) in sent {
        let full = format!("hf_training_{name}");
        let found = got.iter().any(|(l, b, t)| {
            b == bits
                && t == ts_ms
                && l.iter().any(|(k, v)| k == "__name__" && *v == full)
                && labels
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .all(|kv| l.contains(kv))
        });
        assert!(
            found,
            "sample {name} {labels:?} at {ts_ms} not in the request"
        );
    }
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("label text is UTF-8")
}

fn varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = b[*i];
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return v;
        }
    }
    panic!("varint longer than 10 bytes");
}

/// The length-delimited fields numbered `field` of a message; panics on anything that
/// is not well-formed protobuf with only length-delimited, fixed64 and varint fields.
fn fields(msg: &[u8], field: u64) -> impl Iterator<Item = &[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < msg.len() {
        let tag = varint(msg, &mut i);
        match tag & 7 {
            2 => {
                let n = varint(msg, &mut i) as usize;
                assert!(i + n <= msg.len(), "field runs past its message");
                if tag >> 3 == field {
                    out.push(&msg[i..i + n]);
                }
                i += n;
            }
            1 => i += 8,
            0 => {
                varint(msg, &mut i);
            }
            w => panic!("unexpected wire type {w}"),
        }
    }
    assert_eq!(i, msg.len(), "message overruns");
    out.into_iter()
}

fn sample_value(s: &[u8]) -> u64 {
    assert_eq!(s[0], 1 << 3 | 1, "value is field 1, fixed64");
    u64::from_le_bytes(s[1..9].try_into().expect("8 bytes"))
}

fn sample_ts(s: &[u8]) -> i64 {
    assert_eq!(s[9], 2 << 3, "timestamp is field 2, varint");
    let mut i = 10;
    let t = varint(s, &mut i) as i64;
    assert_eq!(i, s.len(), "sample has trailing bytes");
    t
}
