//! The metrics file: the daemon's figures in Prometheus' text exposition format, written
//! atomically every statistics interval (`metrics_file`, `--metrics-file`) for
//! node_exporter's textfile collector (name the file `*.prom` in its directory).
//!
//! # Families
//!
//! Every series has a `daemon` label (the daemon's name), so the files of several daemons
//! can sit in one collector directory.
//!
//! | family | type | labels |
//! |---|---|---|
//! | `zendaemon_component_<counter>_total` | counter | `component` |
//! | `zendaemon_events_dispatched_total` | counter | `event` (the event kind's name) |
//! | `zendaemon_events_unhandled_total` | counter | |
//! | `zendaemon_events_rejected_total` | counter | (schedule calls refused by a full queue) |
//! | `zendaemon_stop_requests_total` | counter | |
//! | `zendaemon_inbox_deferred_total` | counter | |
//! | `zendaemon_timer_missed_periods_total` | counter | |
//! | `zendaemon_queue_high_water` | gauge | `queue` (`sequential`, `timed`) |
//! | `zendaemon_timer_lateness_seconds` | histogram | `le` |
//!
//! Why one family per component counter and not one family with a `counter` label: a
//! component's counters count different things (the demo's `work`, `numbers`, `primes`), and
//! Prometheus' naming rules ask that summing a family over its labels make sense, which it
//! would not across counters of different meanings. Counter keys become name parts with every
//! character other than `[a-zA-Z0-9_]` replaced by `_`.
//!
//! The lateness histogram has the kernel's fixed power-of-four buckets (see
//! [`Lateness`]), with upper bounds in seconds: 0, 3 µs, 15 µs, … , about 1.05 s, `+Inf`.
//!
//! Why by hand and not the `prometheus` or `prometheus-client` crate: those keep their own
//! registries of atomic metrics that the daemon would have to mirror; here the figures already
//! exist (the kernel's statistics, the components' counters) and only need printing, in a
//! format of a few line kinds. Counters only grow within a run: they are the kernel's and the
//! components' cumulative counts, never reset by a statistics interval.

use std::fmt::Write as _;

use zendaemon_core::stats::{Lateness, LATENESS_BUCKETS};

/// The figures of one metrics file, gathered from the kernel by the shell.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// The daemon's name (the `daemon` label).
    pub daemon: String,
    /// Each component's name and its counters (key, current value).
    pub components: Vec<(&'static str, Vec<(&'static str, u64)>)>,
    /// Events dispatched, per event kind name.
    pub dispatched: Vec<(&'static str, u64)>,
    /// User events without a handler.
    pub unhandled: u64,
    /// Schedule calls refused because a queue was full.
    pub rejected: u64,
    /// Stop requests received.
    pub stop_requests: u64,
    /// Posts that waited in the inbox for room in the sequential queue.
    pub inbox_deferred: u64,
    /// Periods skipped by late periodic timers.
    pub missed_periods: u64,
    /// The sequential queue's high-water mark.
    pub sequential_high_water: u64,
    /// The timed queue's high-water mark.
    pub timed_high_water: u64,
    /// Timed event lateness, in clock ticks.
    pub lateness: Lateness,
    /// Clock ticks per second (the lateness unit).
    pub ticks_per_second: f64,
}

/// A metric name part from a counter key: `[a-zA-Z0-9_]` kept, anything else `_`.
fn name_part(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if let Some(stripped) = s.strip_suffix("_total") {
        s = stripped.to_owned();
    }
    s
}

/// A label value, escaped as the text format asks (`\`, `"`, newline).
fn label(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// The file's text.
pub fn render(f: &Figures) -> String {
    let mut out = String::with_capacity(2048);
    let d = label(&f.daemon);

    // Component counters: one family per counter key, in the order first seen.
    let mut families: Vec<String> = Vec::new();
    for (_, counters) in &f.components {
        for (key, _) in counters {
            let family = name_part(key);
            if !families.contains(&family) {
                families.push(family);
            }
        }
    }
    for family in &families {
        let name = format!("zendaemon_component_{family}_total");
        let _ = writeln!(out, "# HELP {name} A component's '{family}' counter.");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (component, counters) in &f.components {
            for (key, value) in counters {
                if name_part(key) == *family {
                    let c = label(component);
                    let _ = writeln!(out, "{name}{{daemon=\"{d}\",component=\"{c}\"}} {value}");
                }
            }
        }
    }

    let _ = writeln!(
        out,
        "# HELP zendaemon_events_dispatched_total Events dispatched by the kernel, per kind."
    );
    let _ = writeln!(out, "# TYPE zendaemon_events_dispatched_total counter");
    for (event, n) in &f.dispatched {
        let e = label(event);
        let _ = writeln!(
            out,
            "zendaemon_events_dispatched_total{{daemon=\"{d}\",event=\"{e}\"}} {n}"
        );
    }

    let plain = [
        (
            "zendaemon_events_unhandled_total",
            "User events that had no handler.",
            f.unhandled,
        ),
        (
            "zendaemon_events_rejected_total",
            "Schedule calls refused because a queue was full.",
            f.rejected,
        ),
        (
            "zendaemon_stop_requests_total",
            "Stop requests received.",
            f.stop_requests,
        ),
        (
            "zendaemon_inbox_deferred_total",
            "Posted events that waited for room in the sequential queue.",
            f.inbox_deferred,
        ),
        (
            "zendaemon_timer_missed_periods_total",
            "Periods skipped by periodic timers that fired late.",
            f.missed_periods,
        ),
    ];
    for (name, help, value) in plain {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name}{{daemon=\"{d}\"}} {value}");
    }

    let _ = writeln!(
        out,
        "# HELP zendaemon_queue_high_water Most events a queue held at once."
    );
    let _ = writeln!(out, "# TYPE zendaemon_queue_high_water gauge");
    for (queue, n) in [
        ("sequential", f.sequential_high_water),
        ("timed", f.timed_high_water),
    ] {
        let _ = writeln!(
            out,
            "zendaemon_queue_high_water{{daemon=\"{d}\",queue=\"{queue}\"}} {n}"
        );
    }

    let name = "zendaemon_timer_lateness_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} How late timed events were dispatched after their deadline."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    let tps = if f.ticks_per_second > 0.0 {
        f.ticks_per_second
    } else {
        1.0
    };
    let mut cumulative = 0u64;
    for (b, &count) in f.lateness.buckets.iter().enumerate() {
        cumulative += u64::from(count);
        let le = if b + 1 < LATENESS_BUCKETS {
            // Bucket b holds whole ticks below the next bucket's floor.
            format!("{}", (Lateness::bucket_floor(b + 1) - 1) as f64 / tps)
        } else {
            "+Inf".to_owned()
        };
        let _ = writeln!(
            out,
            "{name}_bucket{{daemon=\"{d}\",le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "{name}_sum{{daemon=\"{d}\"}} {}",
        f.lateness.sum_ticks as f64 / tps
    );
    let _ = writeln!(out, "{name}_count{{daemon=\"{d}\"}} {cumulative}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    fn figures() -> Figures {
        let mut lateness = Lateness::default();
        for t in [0, 0, 2, 5, 5_000_000] {
            lateness.record(t);
        }
        Figures {
            daemon: "demo \"x\"".into(),
            components: vec![
                ("worker", vec![("work", 5), ("bytes-read", 300)]),
                ("other", vec![("work", 2), ("errors_total", 1)]),
            ],
            dispatched: vec![("start", 1), ("log_statistics", 3), ("work", 7)],
            unhandled: 1,
            rejected: 2,
            stop_requests: 0,
            inbox_deferred: 0,
            missed_periods: 4,
            sequential_high_water: 9,
            timed_high_water: 3,
            lateness,
            ticks_per_second: 1_000_000.0,
        }
    }

    /// `promtool check metrics` on `text`: its output, and whether it passed.
    pub(crate) fn promtool(text: &str) -> (bool, String) {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian package prometheus; .ci/run installs it)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    }

    #[test]
    fn the_text_passes_promtool() {
        let text = render(&figures());
        let (ok, said) = promtool(&text);
        assert!(ok, "{said}\n{text}");
        assert_eq!(said.trim(), "", "promtool has remarks:\n{said}\n{text}");
    }

    #[test]
    fn families_labels_and_histogram() {
        let text = render(&figures());
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "no '{line}' in\n{text}");
        };
        let d = r#"daemon="demo \"x\"""#;
        has(&format!(
            r#"zendaemon_component_work_total{{{d},component="worker"}} 5"#
        ));
        has(&format!(
            r#"zendaemon_component_work_total{{{d},component="other"}} 2"#
        ));
        has(&format!(
            r#"zendaemon_component_bytes_read_total{{{d},component="worker"}} 300"#
        ));
        has(&format!(
            r#"zendaemon_component_errors_total{{{d},component="other"}} 1"#
        ));
        has(&format!(
            r#"zendaemon_events_dispatched_total{{{d},event="work"}} 7"#
        ));
        has(&format!(
            r#"zendaemon_queue_high_water{{{d},queue="sequential"}} 9"#
        ));
        // Buckets are cumulative: 0, 0 | 2 | 5 | ... | 5 s in +Inf.
        has(&format!(
            r#"zendaemon_timer_lateness_seconds_bucket{{{d},le="0"}} 2"#
        ));
        has(&format!(
            r#"zendaemon_timer_lateness_seconds_bucket{{{d},le="0.000003"}} 3"#
        ));
        has(&format!(
            r#"zendaemon_timer_lateness_seconds_bucket{{{d},le="0.000015"}} 4"#
        ));
        has(&format!(
            r#"zendaemon_timer_lateness_seconds_bucket{{{d},le="1.048575"}} 4"#
        ));
        has(&format!(
            r#"zendaemon_timer_lateness_seconds_bucket{{{d},le="+Inf"}} 5"#
        ));
        has(&format!(
            r#"zendaemon_timer_lateness_seconds_count{{{d}}} 5"#
        ));
        has(&format!(
            r#"zendaemon_timer_lateness_seconds_sum{{{d}}} 5.000007"#
        ));
        // One HELP and TYPE per family.
        let types = text
            .lines()
            .filter(|l| l.starts_with("# TYPE zendaemon_component_work_total"))
            .count();
        assert_eq!(types, 1);
    }
}
