//! The hand-written encoders against the libraries that would replace them, on the same
//! samples: a probe's state with 8 GPUs rendered (a) as the text exposition by
//! `TextSink` and by prometheus-client's registry and encoder, (b) as remote_write
//! WriteRequests by `proto::WriteRequestSink` and by prost-derived messages. Prints
//! time per scrape / per request and samples per second; (b) also decodes our bytes with
//! prost and checks they equal the library's message.
//! `cargo bench -p eco2ai-metrics --bench encoders`

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use eco2ai_metrics::proto::WriteRequestSink;
use eco2ai_metrics::{Kind, MetricsState, RunInfo, Sink, TextSink, render};
use eco2ai_trace::{CpuRow, GpuInfo, GpuRow, Meta, Rows, StepRow};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use prost::Message;

const GPUS: u32 = 8;

fn state() -> MetricsState {
    let mut meta = Meta::new("bench");
    meta.labels.project_name = Some("bench".into());
    meta.labels.gco2_per_kwh = Some(50.0);
    meta.gpus = (0..GPUS)
        .map(|i| GpuInfo {
            index: i,
            name: "NVIDIA H200".into(),
            uuid: format!("GPU-{i}"),
            power_limit_mw: Some(700_000),
        })
        .collect();
    let mut s = MetricsState::new(RunInfo::from_meta(&meta, "node-a"));
    for t in 0..100i64 {
        let ts_ns = t * 100_000_000;
        let gpu = (0..GPUS)
            .map(|gpu| GpuRow {
                ts_ns,
                gpu,
                power_mw: Some(400_000 + gpu * 1000),
                energy_mj: Some((t as u64) * 40_000),
                util_gpu_pct: Some(90),
                util_mem_pct: Some(40),
                mem_used_bytes: Some(60 << 30),
                mem_total_bytes: Some(141 << 30),
                temp_c: Some(60),
                sm_clock_mhz: Some(1980),
                ..GpuRow::default()
            })
            .collect();
        s.observe(&Rows::Gpu(gpu));
        s.observe(&Rows::Cpu(vec![CpuRow {
            ts_ns,
            domain: "package-0".into(),
            source: "perf",
            energy_uj: Some(t as u64 * 20_000_000),
            energy_changed: Some(true),
            util_pct: Some(50.0),
        }]));
        s.observe(&Rows::Steps(vec![StepRow {
            step: t as u64,
            begin_ns: ts_ns,
            end_ns: ts_ns + 90_000_000,
            pid: 1,
            samples: Some(32),
            tokens: None,
            loss: Some(2.0),
            lr: Some(1e-4),
            epoch: Some(0.1),
            source: "socket",
            counts: [None; 4],
            sync_ns: None,
            phase: None,
        }]));
    }
    s
}

/// One sample: its labels and value.
type LabeledValue = (Vec<(String, String)>, f64);

/// Every family (name, kind, help, samples) `render` hands out, to feed the libraries
/// the same data.
#[derive(Default)]
struct Recorded(Vec<(String, Kind, String, Vec<LabeledValue>)>);

impl Sink for Recorded {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.0.push((name.into(), kind, help.into(), Vec::new()));
    }
    fn sample(&mut self, _name: &str, labels: &[(&str, &str)], value: f64) {
        let owned = labels.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        if let Some(f) = self.0.last_mut() {
            f.3.push((owned.collect(), value));
        }
    }
}

/// Takes the samples and writes nothing: what rendering from the state costs alone.
struct Null(usize);

impl Sink for Null {
    fn family(&mut self, _: &str, _: Kind, _: &str) {}
    fn sample(&mut self, _: &str, _: &[(&str, &str)], v: f64) {
        self.0 += usize::from(v.is_finite());
    }
}

type Labels = Vec<(String, String)>;
enum LibFamily {
    Gauge(Family<Labels, Gauge<f64, AtomicU64>>),
    Counter(Family<Labels, Counter<f64, AtomicU64>>),
}

fn time<T>(rounds: u32, mut f: impl FnMut() -> T) -> f64 {
    let t = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(f());
    }
    t.elapsed().as_secs_f64() / f64::from(rounds)
}

fn exposition(s: &MetricsState, rec: &Recorded, samples: usize) {
    let errors = BTreeMap::new();
    let ours = time(2000, || {
        let mut t = TextSink::default();
        render(s, &errors, 1.0, &mut t);
        t.0
    });
    let state_only = time(2000, || {
        let mut n = Null(0);
        render(s, &errors, 1.0, &mut n);
        n.0
    });
    let mut reg = Registry::default();
    let mut fams = Vec::new();
    for (name, kind, help, _) in &rec.0 {
        let full = format!("hf_training_{}", name.trim_end_matches("_total"));
        let f = if matches!(kind, Kind::Counter) {
            let f = Family::<Labels, Counter<f64, AtomicU64>>::default();
            reg.register(full, help.clone(), f.clone());
            LibFamily::Counter(f)
        } else {
            let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
            reg.register(full, help.clone(), f.clone());
            LibFamily::Gauge(f)
        };
        fams.push(f);
    }
    // Per scrape the library pays the updates (the state lives in its atomics) and the
    // encoding; ours renders from the state.
    let lib = time(2000, || {
        for (f, (_, _, _, samples)) in fams.iter().zip(&rec.0) {
            for (labels, v) in samples {
                match f {
                    LibFamily::Gauge(g) => {
                        g.get_or_create(labels).set(*v);
                    }
                    LibFamily::Counter(c) => {
                        c.get_or_create(labels).inc_by(0.0);
                    }
                }
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).map(|_| out)
    });
    println!(
        "text exposition, {samples} samples a scrape: hand-written {:.1} us ({:.2} M samples/s), \
         prometheus-client {:.1} us ({:.2} M samples/s): library / ours = {:.2}; \
         of ours, {:.1} us is reading the state (no encoding)",
        ours * 1e6,
        samples as f64 / ours / 1e6,
        lib * 1e6,
        samples as f64 / lib / 1e6,
        lib / ours,
        state_only * 1e6
    );
}

#[derive(Clone, PartialEq, prost::Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}
#[derive(Clone, PartialEq, prost::Message)]
struct Sample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

/// The same request built with prost: series gathered by key, labels sorted with the
/// same rules as `WriteRequestSink`.
#[derive(Default)]
struct ProstSink {
    ts_ms: i64,
    req: WriteRequest,
    index: HashMap<String, usize>,
}

impl Sink for ProstSink {
    fn family(&mut self, _: &str, _: Kind, _: &str) {}
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let mut key = String::new();
        for p in std::iter::once(name).chain(labels.iter().flat_map(|(k, v)| [*k, *v])) {
            key.push_str(&format!("{}:{p}", p.len()));
        }
        let n = self.req.timeseries.len();
        let i = *self.index.entry(key).or_insert(n);
        if i == n {
            let full = format!("hf_training_{name}");
            let mut sorted: Vec<(&str, &str)> = vec![("__name__", &full)];
            sorted.extend(labels.iter().copied().filter(|(_, v)| !v.is_empty()));
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            let labels = sorted
                .into_iter()
                .map(|(k, v)| Label {
                    name: k.into(),
                    value: v.into(),
                })
                .collect();
            self.req.timeseries.push(TimeSeries {
                labels,
                samples: Vec::new(),
            });
        }
        self.req.timeseries[i].samples.push(Sample {
            value,
            timestamp: self.ts_ms,
        });
    }
}

fn remote_write(s: &MetricsState, samples: usize) {
    const TICKS: i64 = 20; // a request of 20 instants, ~the replay's 5,000-sample batches
    let errors = BTreeMap::new();
    let ours_bytes = |s: &MetricsState| {
        let mut sink = WriteRequestSink::default();
        for t in 0..TICKS {
            sink.ts_ms = t * 1000;
            render(s, &errors, 1.0, &mut sink);
        }
        sink.take_request()
    };
    let prost_msg = |s: &MetricsState| {
        let mut sink = ProstSink::default();
        for t in 0..TICKS {
            sink.ts_ms = t * 1000;
            render(s, &errors, 1.0, &mut sink);
        }
        sink.req
    };
    let decoded = WriteRequest::decode(ours_bytes(s).as_slice()).expect("ours decodes");
    assert!(
        decoded == prost_msg(s),
        "the hand-written request differs from prost's"
    );
    let ours = time(300, || ours_bytes(s));
    let lib = time(300, || prost_msg(s).encode_to_vec());
    let n = samples as f64 * TICKS as f64;
    println!(
        "remote_write request, {n} samples: hand-written {:.0} us ({:.2} M samples/s), \
         prost {:.0} us ({:.2} M samples/s): library / ours = {:.2}; bytes identical to prost's decoding",
        ours * 1e6,
        n / ours / 1e6,
        lib * 1e6,
        n / lib / 1e6,
        lib / ours
    );
}

fn main() {
    let s = state();
    let mut rec = Recorded::default();
    render(&s, &BTreeMap::new(), 1.0, &mut rec);
    let samples: usize = rec.0.iter().map(|f| f.3.len()).sum();
    exposition(&s, &rec, samples);
    remote_write(&s, samples);
}
