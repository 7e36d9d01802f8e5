//! Runlog files: their names, their common keys, and the three read-only actions over them.
//!
//! A runlog is a JSON document that the daemon saves every runlog interval, on SIGUSR1 and at
//! exit, one file per save, named `<YYYYmmddHHMMSS>.<mmm>.<SEQ>.<PID>.runlog`: the UTC time of
//! the save to the millisecond, the process's sequence number of its saves (6 digits, wrapping
//! at a million), then the PID zero-padded to 10 digits. Every part has a fixed width, so the
//! lexicographic order of the names is the chronological order (pyzenkit's
//! minute-and-hex-serial names were not). No save replaces another: two saves in the same
//! millisecond differ by their sequence number, and a name that exists already (a reused PID)
//! is skipped ([`new_path`]).
//!
//! The keys every runlog carries are [`RunlogHeader`]'s: pyzenkit's `name`, `pid`, `argv`, `ts`,
//! `ts_str`, `result`, `errors`, `rc` and `statistics`, plus `runtime` and `events`. A runlog
//! may carry more keys; readers ignore them.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::civil::Utc;
use crate::error::{Error, Result};

/// The file name extension of runlog files.
pub const EXTENSION: &str = "runlog";

/// How a run ended, as the runlog's `result` key spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// `"success"`: no error so far.
    Success,
    /// `"failure"`: at least one error (see `errors`).
    Failure,
}

impl RunResult {
    /// `"success"` or `"failure"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// The keys every runlog carries; the writer and the readers share this one definition.
///
/// `S` is the type of `statistics`: the writer serializes its own statistics type, readers get a
/// [`serde_json::Value`] (the default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunlogHeader<S = Value> {
    /// The daemon's name.
    pub name: String,
    /// The daemon's PID (after the last fork).
    pub pid: u32,
    /// The daemon's command line.
    pub argv: Vec<String>,
    /// When the daemon started, in seconds since the Unix epoch.
    pub ts: f64,
    /// `ts` as `YYYY-mm-dd HH:MM:SS`, UTC ([`ts_string`]).
    pub ts_str: String,
    /// `"success"` or `"failure"`.
    pub result: RunResult,
    /// The errors met so far, oldest first.
    pub errors: Vec<String>,
    /// The exit code so far.
    pub rc: i32,
    /// Seconds since the daemon started, at the save.
    pub runtime: f64,
    /// Events dispatched since the daemon started.
    pub events: u64,
    /// Statistics: the kernel's and each component's (a JSON object).
    pub statistics: S,
}

/// `t` in seconds since the Unix epoch (negative before it), the runlog's `ts`.
pub fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// `t` as `YYYY-mm-dd HH:MM:SS` in UTC, the runlog's `ts_str`.
pub fn ts_string(t: SystemTime) -> String {
    Utc::from_system_time(t).display().to_string()
}

/// The name of the runlog saved at `t` by process `pid` as its save number `seq`:
/// `<YYYYmmddHHMMSS>.<mmm>.<SEQ>.<PID>.runlog`.
pub fn file_name(t: SystemTime, seq: u32, pid: u32) -> String {
    let millis = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    format!(
        "{}.{millis:03}.{:06}.{pid:010}.{EXTENSION}",
        Utc::from_system_time(t).compact(),
        seq % 1_000_000
    )
}

/// The path for a new runlog in `dir` saved at `t` by process `pid`: [`file_name`] with this
/// process's next sequence number, skipping names that exist already, so no runlog is ever
/// replaced by another.
pub fn new_path(dir: &Path, t: SystemTime, pid: u32) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let mut path = PathBuf::new();
    // A million names per millisecond and PID: a free one is found at once in practice.
    for _ in 0..1_000 {
        path = dir.join(file_name(t, SEQ.fetch_add(1, Ordering::Relaxed), pid));
        if fs::symlink_metadata(&path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
            break;
        }
    }
    path
}

/// The runlog files (`*.runlog`, regular files or links to them) in `dir`, newest first (by
/// name, see the [module documentation](self)). A missing `dir` has none.
///
/// # Errors
///
/// [`Error::Io`] naming `dir` when it exists but cannot be read.
pub fn list_runlogs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read runlog directory", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read runlog directory", dir, e))?;
        let path = entry.path();
        let is_runlog = path.extension().is_some_and(|x| x == EXTENSION)
            && path.file_stem().is_some_and(|s| !s.is_empty());
        if is_runlog && fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            names.push(path);
        }
    }
    names.sort_unstable_by(|a, b| b.file_name().cmp(&a.file_name()));
    Ok(names)
}

/// Reads the common keys of one runlog.
///
/// # Errors
///
/// [`Error::Io`] when `path` cannot be read; [`Error::Data`] naming `path` when it is not JSON
/// or lacks a key of [`RunlogHeader`] (or has one of the wrong type).
pub fn read_runlog(path: &Path) -> Result<RunlogHeader> {
    let text = fs::read(path).map_err(|e| Error::io("read runlog", path, e))?;
    serde_json::from_slice(&text).map_err(|e| Error::data("runlog", path, e.to_string()))
}

fn count_line(out: &mut String, found: usize, limit: Option<usize>) {
    let _ = writeln!(out, "  Runlog(s) found: {found}");
    if let Some(limit) = limit {
        let _ = writeln!(out, "  Result limit: {limit}");
    }
}

/// The `runlogs-list` action's output: the runlog files in `dir`, newest first, at most `limit`.
///
/// # Errors
///
/// As [`list_runlogs`].
pub fn runlogs_list(dir: &Path, limit: Option<usize>) -> Result<String> {
    let files = list_runlogs(dir)?;
    let mut out = format!(
        "Listing application runlogs in directory '{}':\n",
        dir.display()
    );
    count_line(&mut out, files.len(), limit);
    for f in files.iter().take(limit.unwrap_or(usize::MAX)) {
        let _ = writeln!(out, "  {}", f.display());
    }
    Ok(out)
}

/// The `runlog-view` action's output: a readable summary of the runlog at `path` (label, name
/// and PID, command, runtime, events, error count, result), then its errors, if any.
///
/// # Errors
///
/// As [`read_runlog`]: a malformed runlog is an error here.
pub fn runlog_view(path: &Path) -> Result<String> {
    let r = read_runlog(path)?;
    let mut out = format!("Viewing application runlog '{}':\n\n", path.display());
    let rows: [(&str, String); 8] = [
        ("Label", r.ts_str.clone()),
        ("Name", r.name.clone()),
        ("PID", r.pid.to_string()),
        ("Command", r.argv.join(" ")),
        ("Runtime", format!("{:.3} s", r.runtime)),
        ("Events", r.events.to_string()),
        ("Errors", r.errors.len().to_string()),
        ("Result", format!("{} (rc {})", r.result.as_str(), r.rc)),
    ];
    out.push_str("General information:\n");
    for (label, value) in rows {
        let _ = writeln!(out, "  {:<9} {value}", format!("{label}:"));
    }
    if !r.errors.is_empty() {
        out.push_str("\nProcessing errors:\n");
        for e in &r.errors {
            let _ = writeln!(out, "  - {e}");
        }
    }
    Ok(out)
}

/// The `runlogs-evaluate` action's output: one table row per runlog in `dir` (newest first, at
/// most `limit` files): time (`ts_str`), runtime, events, errors, result; then the minimal,
/// maximal and average runtime, events and errors over those rows. A malformed runlog is named
/// below the table and left out of it.
///
/// # Errors
///
/// As [`list_runlogs`]; unreadable or malformed runlog files are reported, not errors.
pub fn runlogs_evaluate(dir: &Path, limit: Option<usize>) -> Result<String> {
    let files = list_runlogs(dir)?;
    let mut out = format!(
        "Evaluating application runlogs in directory '{}':\n",
        dir.display()
    );
    count_line(&mut out, files.len(), limit);
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for f in files.iter().take(limit.unwrap_or(usize::MAX)) {
        match read_runlog(f) {
            Ok(r) => rows.push(r),
            Err(e) => skipped.push(e.to_string()),
        }
    }
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<19}  {:>12}  {:>12}  {:>8}  Result",
            "Time", "Runtime [s]", "Events", "Errors"
        );
        for r in &rows {
            let _ = writeln!(
                out,
                "{:<19}  {:>12.3}  {:>12}  {:>8}  {}",
                r.ts_str,
                r.runtime,
                r.events,
                r.errors.len(),
                r.result.as_str()
            );
        }
        let runtime = Summary::of(rows.iter().map(|r| r.runtime));
        let events = Summary::of(rows.iter().map(|r| r.events as f64));
        let errors = Summary::of(rows.iter().map(|r| r.errors.len() as f64));
        for (label, pick) in [
            ("Minimal value", Summary::min as fn(&Summary) -> f64),
            ("Maximal value", Summary::max),
        ] {
            let _ = writeln!(
                out,
                "{label:<19}  {:>12.3}  {:>12}  {:>8}",
                pick(&runtime),
                pick(&events),
                pick(&errors)
            );
        }
        let _ = writeln!(
            out,
            "{:<19}  {:>12.3}  {:>12.2}  {:>8.2}",
            "Average value",
            runtime.mean(),
            events.mean(),
            errors.mean()
        );
    }
    if !skipped.is_empty() {
        out.push_str("\nSkipped:\n");
        for s in &skipped {
            let _ = writeln!(out, "  {s}");
        }
    }
    Ok(out)
}

/// Minimum, maximum and sum of a non-empty series.
struct Summary {
    min: f64,
    max: f64,
    sum: f64,
    n: usize,
}

impl Summary {
    fn of(values: impl Iterator<Item = f64>) -> Self {
        let mut s = Summary {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            n: 0,
        };
        for v in values {
            s.min = s.min.min(v);
            s.max = s.max.max(v);
            s.sum += v;
            s.n += 1;
        }
        s
    }
    fn min(&self) -> f64 {
        self.min
    }
    fn max(&self) -> f64 {
        self.max
    }
    fn mean(&self) -> f64 {
        self.sum / self.n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn header(secs: u64, runtime: f64, events: u64, errors: &[&str]) -> RunlogHeader {
        RunlogHeader {
            name: "tail".into(),
            pid: 4242,
            argv: vec!["tailer".into(), "--no-daemon".into()],
            ts: secs as f64,
            ts_str: ts_string(at(secs)),
            result: if errors.is_empty() {
                RunResult::Success
            } else {
                RunResult::Failure
            },
            errors: errors.iter().map(|s| s.to_string()).collect(),
            rc: if errors.is_empty() { 0 } else { 1 },
            runtime,
            events,
            statistics: serde_json::json!({"kernel": {"dispatched": events}}),
        }
    }

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, body).unwrap();
        p
    }

    fn save(dir: &Path, secs: u64, pid: u32, h: &RunlogHeader) -> PathBuf {
        write(
            dir,
            &file_name(at(secs), 0, pid),
            &serde_json::to_string_pretty(h).unwrap(),
        )
    }

    #[test]
    fn names_sort_chronologically() {
        assert_eq!(
            file_name(at(1_795_472_165), 3, 4242),
            "20261123221605.000.000003.0000004242.runlog"
        );
        let ms = |s: u64, ms: u64| at(s) + Duration::from_millis(ms);
        let mut names = vec![
            file_name(ms(1_795_472_165, 0), 0, 4_000_000),
            file_name(ms(1_795_472_166, 0), 0, 7),
            file_name(ms(1_000_000_000, 0), 5, u32::MAX),
            file_name(ms(1_795_472_165, 999), 0, 12),
            file_name(ms(1_795_472_165, 0), 1, 4_000_000),
            file_name(ms(1_795_472_165, 10), 0, 12_345_678),
        ];
        names.sort();
        assert_eq!(
            names,
            [
                file_name(ms(1_000_000_000, 0), 5, u32::MAX),
                file_name(ms(1_795_472_165, 0), 0, 4_000_000),
                file_name(ms(1_795_472_165, 0), 1, 4_000_000),
                file_name(ms(1_795_472_165, 10), 0, 12_345_678),
                file_name(ms(1_795_472_165, 999), 0, 12),
                file_name(ms(1_795_472_166, 0), 0, 7),
            ]
        );
        assert_eq!(ts_string(at(1_795_472_165)), "2026-11-23 22:16:05");
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_millis(1500)), 1.5);
    }

    #[test]
    fn saves_in_the_same_millisecond_never_share_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let t = at(1_795_472_165);
        let mut paths = Vec::new();
        for i in 0..3 {
            let p = new_path(dir.path(), t, 4242);
            fs::write(&p, format!("{i}")).unwrap();
            paths.push(p);
        }
        assert_eq!(list_runlogs(dir.path()).unwrap().len(), 3);
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(fs::read_to_string(p).unwrap(), format!("{i}"));
        }
    }

    #[test]
    fn header_keys_round_trip() {
        let h = header(1_795_472_165, 12.5, 100, &["boom"]);
        let v = serde_json::to_value(&h).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = [
            "argv",
            "errors",
            "events",
            "name",
            "pid",
            "rc",
            "result",
            "runtime",
            "statistics",
            "ts",
            "ts_str",
        ];
        expected.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, expected);
        assert_eq!(v["result"], "failure");
        assert_eq!(serde_json::from_value::<RunlogHeader>(v).unwrap(), h);
        // Extra keys (time marks, component data...) are ignored by readers.
        let mut v = serde_json::to_value(&h).unwrap();
        v["time_marks"] = serde_json::json!([]);
        assert_eq!(serde_json::from_value::<RunlogHeader>(v).unwrap(), h);
        // The writer can use its own statistics type.
        #[derive(Serialize)]
        struct Stats {
            dispatched: u64,
        }
        let typed = RunlogHeader {
            statistics: Stats { dispatched: 3 },
            name: h.name.clone(),
            pid: h.pid,
            argv: h.argv.clone(),
            ts: h.ts,
            ts_str: h.ts_str.clone(),
            result: h.result,
            errors: h.errors.clone(),
            rc: h.rc,
            runtime: h.runtime,
            events: h.events,
        };
        assert_eq!(
            serde_json::to_value(typed).unwrap()["statistics"]["dispatched"],
            3
        );
    }

    #[test]
    fn listing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(list_runlogs(&d.join("missing")).unwrap().is_empty());
        let old = save(d, 1_000, 1, &header(1_000, 1.0, 1, &[]));
        let new = save(d, 2_000, 1, &header(2_000, 1.0, 1, &[]));
        let mid = save(d, 1_500, 99, &header(1_500, 1.0, 1, &[]));
        write(d, "notes.txt", "x");
        write(d, ".runlog", "x");
        fs::create_dir(d.join("dir.runlog")).unwrap();
        assert_eq!(list_runlogs(d).unwrap(), [new.clone(), mid.clone(), old]);

        let text = runlogs_list(d, Some(2)).unwrap();
        assert!(text.contains("Runlog(s) found: 3"), "{text}");
        assert!(text.contains("Result limit: 2"), "{text}");
        let new_pos = text.find(&new.display().to_string()).unwrap();
        let mid_pos = text.find(&mid.display().to_string()).unwrap();
        assert!(new_pos < mid_pos);
        assert!(!text.contains("19700101001640"), "{text}");

        let empty = runlogs_list(&d.join("missing"), None).unwrap();
        assert!(empty.contains("Runlog(s) found: 0"), "{empty}");
    }

    #[test]
    fn unreadable_dir_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "plain", "x");
        let err = list_runlogs(&file).unwrap_err();
        assert!(err.to_string().contains("plain"), "{err}");
    }

    #[test]
    fn view() {
        let dir = tempfile::tempdir().unwrap();
        let p = save(
            dir.path(),
            1_795_472_165,
            4242,
            &header(
                1_795_472_165,
                3723.4567,
                12345,
                &["disk full", "retry failed"],
            ),
        );
        let text = runlog_view(&p).unwrap();
        for needle in [
            "Label:    2026-11-23 22:16:05",
            "Name:     tail",
            "PID:      4242",
            "Command:  tailer --no-daemon",
            "Runtime:  3723.457 s",
            "Events:   12345",
            "Errors:   2",
            "Result:   failure (rc 1)",
            "Processing errors:\n  - disk full\n  - retry failed\n",
        ] {
            assert!(text.contains(needle), "{needle:?} in\n{text}");
        }
        let ok = save(dir.path(), 1_000, 1, &header(1_000, 1.0, 1, &[]));
        assert!(!runlog_view(&ok).unwrap().contains("Processing errors"));
    }

    #[test]
    fn view_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = write(dir.path(), "bad.runlog", "{\"name\": ");
        let err = runlog_view(&bad).unwrap_err();
        assert!(matches!(err, Error::Data { .. }), "{err:?}");
        assert!(err.to_string().contains("bad.runlog"), "{err}");
        assert_eq!(err.exit_code(), crate::error::exit::DATA);

        let partial = write(dir.path(), "partial.runlog", "{\"name\": \"x\"}");
        let err = runlog_view(&partial).unwrap_err().to_string();
        assert!(
            err.contains("partial.runlog") && err.contains("missing field"),
            "{err}"
        );

        let err = runlog_view(&dir.path().join("none.runlog")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
    }

    #[test]
    fn evaluate() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        save(d, 1_000, 1, &header(1_000, 10.0, 100, &[]));
        save(d, 2_000, 1, &header(2_000, 2.5, 50, &["a", "b", "c"]));
        save(d, 3_000, 1, &header(3_000, 0.5, 0, &[]));
        let bad = write(d, &file_name(at(2_500), 0, 7), "not json");

        let text = runlogs_evaluate(d, None).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let head = lines.iter().position(|l| l.starts_with("Time")).unwrap();
        assert!(lines[head].contains("Runtime") && lines[head].contains("Events"));
        assert!(lines[head + 1].starts_with("1970-01-01 00:50:00"), "{text}");
        assert!(lines[head + 1].ends_with("success"));
        assert!(lines[head + 2].starts_with("1970-01-01 00:33:20"));
        assert!(lines[head + 2].contains("failure"));
        assert!(lines[head + 3].starts_with("1970-01-01 00:16:40"));
        let min = lines[head + 4];
        let max = lines[head + 5];
        let avg = lines[head + 6];
        assert!(min.starts_with("Minimal value"), "{text}");
        assert_eq!(
            min.split_whitespace().skip(2).collect::<Vec<_>>(),
            ["0.500", "0", "0"]
        );
        assert_eq!(
            max.split_whitespace().skip(2).collect::<Vec<_>>(),
            ["10.000", "100", "3"]
        );
        assert_eq!(
            avg.split_whitespace().skip(2).collect::<Vec<_>>(),
            ["4.333", "50.00", "1.00"]
        );
        assert!(text.contains("Skipped:"), "{text}");
        assert!(text.contains(&bad.display().to_string()), "{text}");

        // The limit takes the newest files.
        let text = runlogs_evaluate(d, Some(1)).unwrap();
        assert!(text.contains("1970-01-01 00:50:00"));
        assert!(!text.contains("1970-01-01 00:33:20"));
        assert!(!text.contains("Skipped"));

        // Nothing to evaluate: no table.
        let text = runlogs_evaluate(&d.join("missing"), None).unwrap();
        assert!(
            text.contains("Runlog(s) found: 0") && !text.contains("Minimal"),
            "{text}"
        );
    }
}
