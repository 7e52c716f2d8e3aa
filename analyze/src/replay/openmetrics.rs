//! OpenMetrics text with timestamps, for `promtool tsdb create-blocks-from openmetrics`,
//! and the same grouping for the text format of a /metrics serving several runs. Both
//! want each family's samples together, so samples are gathered per family over all
//! instants (and runs) and written family by family.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use eco2ai_metrics::{Kind, Sink, push_escaped};

use super::Replay;

struct Family {
    head: String,
    body: String,
}

/// Which exposition to write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 with a timestamp on every sample, ending in `# EOF`.
    #[default]
    OpenMetrics,
    /// The Prometheus text format (0.0.4) as the live /metrics serves it, no timestamps.
    Text,
}

/// Collects samples grouped by family; `ts_ms` is the instant being rendered.
#[derive(Default)]
pub struct OpenMetricsSink {
    pub format: Format,
    pub ts_ms: i64,
    families: Vec<Family>,
    index: HashMap<String, usize>,
    current: usize,
    pub samples: u64,
}

impl Sink for OpenMetricsSink {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        if let Some(&i) = self.index.get(name) {
            self.current = i;
            return;
        }
        // OpenMetrics counters are named without `_total`, their samples with it; the
        // counters whose names lack it (step_count, epoch_count) go as gauges.
        let (type_name, kind) = match (self.format, kind, name.strip_suffix("_total")) {
            (Format::Text, k, _) => (name, k.as_str()),
            (_, Kind::Counter, Some(base)) => (base, "counter"),
            _ => (name, "gauge"),
        };
        let head = format!(
            "# HELP hf_training_{type_name} {help}\n# TYPE hf_training_{type_name} {kind}\n"
        );
        self.families.push(Family {
            head,
            body: String::new(),
        });
        self.current = self.families.len() - 1;
        self.index.insert(name.to_string(), self.current);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let Some(f) = self.families.get_mut(self.current) else {
            return;
        };
        let b = &mut f.body;
        b.push_str("hf_training_");
        b.push_str(name);
        b.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                b.push(',');
            }
            b.push_str(k);
            b.push_str("=\"");
            push_escaped(b, v);
            b.push('"');
        }
        if self.format == Format::Text {
            let _ = writeln!(b, "}} {value}");
        } else {
            let (s, ms) = (self.ts_ms.div_euclid(1000), self.ts_ms.rem_euclid(1000));
            let _ = writeln!(b, "}} {value} {s}.{ms:03}");
        }
        self.samples += 1;
    }
}

impl OpenMetricsSink {
    pub fn new(format: Format) -> OpenMetricsSink {
        OpenMetricsSink {
            format,
            ..OpenMetricsSink::default()
        }
    }

    /// The whole exposition (OpenMetrics: `# EOF` included).
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        for f in &self.families {
            out.write_all(f.head.as_bytes())?;
            out.write_all(f.body.as_bytes())?;
        }
        if self.format == Format::OpenMetrics {
            out.write_all(b"# EOF\n")?;
        }
        Ok(())
    }

    pub fn into_text(self) -> String {
        let mut out = Vec::new();
        let _ = self.write_to(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Renders the run every `every_ns` into `sink`; returns the number of samples.
pub fn render_run(replay: &mut Replay, every_ns: i64, sink: &mut OpenMetricsSink) -> u64 {
    let ticks: Vec<i64> = replay.ticks(every_ns).collect();
    for t in ticks {
        replay.advance_to(t);
        sink.ts_ms = replay.unix_ms(t);
        replay.render_at(t, sink);
    }
    sink.samples
}

/// Writes the runs as OpenMetrics to `path` (via a temporary file, renamed when
/// complete); returns the number of samples.
pub fn write_file(replays: &mut [Replay], every_ns: i64, path: &Path) -> std::io::Result<u64> {
    let mut sink = OpenMetricsSink::default();
    let mut n = 0;
    for r in replays.iter_mut() {
        n = render_run(r, every_ns, &mut sink);
    }
    let tmp = path.with_extension("om.tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    sink.write_to(&mut f)?;
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(n)
}
