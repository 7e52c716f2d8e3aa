//! The Prometheus text exposition format (0.0.4), as /metrics serves it.

use std::fmt::Write as _;

use crate::render::{Kind, Sink};

/// Escapes a label value (backslash, double quote, newline).
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
        let _ = write!(self.0, "hf_training_{name}{{");
        for (i, (k, v)) in labels.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(self.0, "{sep}{k}=\"{}\"", escape(v));
        }
        let _ = writeln!(self.0, "}} {value}");
    }
}
