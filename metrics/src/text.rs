//! The Prometheus text exposition format (0.0.4), as /metrics serves it.

use std::fmt::Write as _;

use crate::render::{Kind, Sink};

/// Escapes a label value (backslash, double quote, newline).
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    push_escaped(&mut out, v);
    out
}

/// Appends `v` escaped; most values need no escaping and are copied whole. Every text
/// encoder uses it (the replay's OpenMetrics too).
pub fn push_escaped(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Collects the exposition text in `.0`.
#[derive(Debug, Default)]
pub struct TextSink(pub String);

impl Sink for TextSink {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(
            self.0,
            "# HELP hf_training_{name} {help}\n# TYPE hf_training_{name} {}",
            kind.as_str()
        );
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        // push_str over write!: a scrape is mostly label text, and the formatting
        // machinery doubled its cost (benches/encoders.rs).
        let o = &mut self.0;
        o.push_str("hf_training_");
        o.push_str(name);
        o.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str(k);
            o.push_str("=\"");
            push_escaped(o, v);
            o.push('"');
        }
        let _ = writeln!(o, "}} {value}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::escape("plain"), "plain");
        assert_eq!(super::escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
