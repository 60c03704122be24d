//! Prometheus metrics: calls by tool and outcome, and a latency histogram per tool.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// One family of a single unlabelled sample: name, type (`gauge` or `counter`), help, value.
pub type Family<'a> = (&'a str, &'a str, &'a str, f64);

/// `families` in the Prometheus text exposition format, each with its `HELP` and `TYPE` lines.
/// Counts up to 2^53 print exactly as f64 (`3`, not `3.0`).
pub fn render_families(families: &[Family<'_>]) -> String {
    let mut out = String::new();
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Hist {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Hist {
    /// Count one call that took `seconds`.
    fn add(&mut self, seconds: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// One tool's counters: calls by outcome and the latency histogram, kept together so that a
/// call takes one lock and one lookup.
#[derive(Default)]
struct ToolStats {
    by_outcome: BTreeMap<&'static str, u64>,
    latency: Hist,
}

impl ToolStats {
    fn add(&mut self, outcome: &'static str, seconds: f64) {
        *self.by_outcome.entry(outcome).or_default() += 1;
        self.latency.add(seconds);
    }
}

/// In-memory counters, rendered on `GET /metrics`.
#[derive(Default)]
pub struct Metrics {
    /// Tool → its counters: looked up by `&str`, so a call allocates no key once its tool has
    /// been seen.
    tools: Mutex<BTreeMap<String, ToolStats>>,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Count one finished call.
    pub fn observe(&self, tool: &str, outcome: &'static str, seconds: f64) {
        let Ok(mut tools) = self.tools.lock() else {
            return;
        };
        if let Some(stats) = tools.get_mut(tool) {
            stats.add(outcome, seconds);
            return;
        }
        tools
            .entry(tool.to_string())
            .or_default()
            .add(outcome, seconds);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP toolgate_calls_total Tool calls by tool and outcome.\n# TYPE toolgate_calls_total counter\n");
        let Ok(tools) = self.tools.lock() else {
            return out;
        };
        for (tool, stats) in tools.iter() {
            let t = escape(tool);
            for (outcome, n) in &stats.by_outcome {
                let _ = writeln!(
                    out,
                    "toolgate_calls_total{{tool=\"{t}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP toolgate_call_duration_seconds Tool call latency.\n# TYPE toolgate_call_duration_seconds histogram\n");
        for (tool, stats) in tools.iter() {
            let t = escape(tool);
            let h = &stats.latency;
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "toolgate_call_duration_seconds_bucket{{tool=\"{t}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "toolgate_call_duration_seconds_bucket{{tool=\"{t}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "toolgate_call_duration_seconds_sum{{tool=\"{t}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "toolgate_call_duration_seconds_count{{tool=\"{t}\"}} {}",
                h.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_buckets() {
        let m = Metrics::default();
        m.observe("lookup_order", "success", 0.02);
        m.observe("lookup_order", "timeout", 0.3);
        let text = m.render();
        assert!(text.contains("toolgate_calls_total{tool=\"lookup_order\",outcome=\"success\"} 1"));
        assert!(text.contains(
            "toolgate_call_duration_seconds_bucket{tool=\"lookup_order\",le=\"0.025\"} 1"
        ));
        assert!(text.contains("toolgate_call_duration_seconds_count{tool=\"lookup_order\"} 2"));
        // A second tool: each family's lines stay together, counters before the histograms.
        m.observe("book", "success", 2.0);
        let text = m.render();
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {text}"))
        };
        let histograms = at("# HELP toolgate_call_duration_seconds");
        assert!(at("toolgate_calls_total{tool=\"book\",outcome=\"success\"} 1") < histograms);
        assert!(
            at("toolgate_calls_total{tool=\"lookup_order\",outcome=\"timeout\"} 1") < histograms
        );
        assert!(
            at("toolgate_call_duration_seconds_bucket{tool=\"book\",le=\"2.5\"} 1") > histograms
        );
        assert!(text.contains("toolgate_call_duration_seconds_bucket{tool=\"book\",le=\"1\"} 0"));
        assert!(text.contains("toolgate_call_duration_seconds_sum{tool=\"book\"} 2"));
    }
}
