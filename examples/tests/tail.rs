//! The `tail` daemon as a process: files appended to, rotated (rename and recreate) and
//! truncated (copytruncate) while it runs, and restarts in the middle of a stream. Counts are
//! read from its state dump (`SIGUSR2`), its final runlog and its persistent state.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{read_json, wait_for, Fg, Sandbox};
use serde_json::Value;

const TAIL: &str = env!("CARGO_BIN_EXE_tail");

/// A sandbox whose configuration follows `files` (in the sandbox) from their start, polling
/// every 20 ms, and counts lines with `ERROR`.
fn sandbox(files: &[&str]) -> Sandbox {
    let s = Sandbox::new(TAIL, "tail");
    configure(&s, files, r#""start_at": "beginning","#);
    s
}

fn configure(s: &Sandbox, files: &[&str], extra: &str) {
    let files: Vec<String> = files
        .iter()
        .map(|f| format!("{:?}", s.path(f).display().to_string()))
        .collect();
    s.write_config(&format!(
        r#"{{
            "tail": {{ "files": [{}], {extra} "poll_ms": 20 }},
            "count": {{ "patterns": {{ "errors": "ERROR" }} }}
        }}"#,
        files.join(", ")
    ));
}

fn append(path: &Path, text: &str) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// `n` lines numbered from `from`, every tenth with `ERROR`.
fn numbered(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| {
            if i.is_multiple_of(10) {
                format!("line {i} ERROR\n")
            } else {
                format!("line {i}\n")
            }
        })
        .collect()
}

/// The counter's counts from a state dump.
fn counts(s: &Sandbox, fg: &Fg) -> Value {
    s.dump_state(fg)["components"]["counter"].clone()
}

fn get(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// Waits until the counts are `expected` (`<path>:` keys given with the sandbox-relative
/// file name), then checks they stay there over a few more polls.
fn expect_counts(s: &Sandbox, fg: &Fg, expected: &[(&str, u64)]) {
    let key = |k: &str| match k.split_once(':') {
        Some((file, what)) => format!("{}:{what}", s.path(file).display()),
        None => k.to_owned(),
    };
    let matches = |v: &Value| expected.iter().all(|(k, n)| get(v, &key(k)) == *n);
    let mut last = Value::Null;
    let found = common::poll(|| {
        last = counts(s, fg);
        matches(&last).then_some(())
    });
    assert!(
        found.is_some(),
        "expected {expected:?}, the counter has {last:#}\n{}",
        fg.log()
    );
    std::thread::sleep(Duration::from_millis(150));
    let later = counts(s, fg);
    assert!(matches(&later), "counted too much: {later:#}");
}

/// The follower's counters in the last runlog (the final one after a stop).
fn follower_counter(s: &Sandbox, key: &str) -> u64 {
    let last = s.runlogs().pop().expect("a runlog");
    read_json(&last)["statistics"]["components"]["follower"][key]["cnt"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn appended_lines_are_counted_and_a_partial_line_waits() {
    let mut s = sandbox(&["app.log"]);
    let log = s.path("app.log");
    append(&log, "one\nERROR two\n");
    let mut fg = s.start(&[]);
    expect_counts(
        &s,
        &fg,
        &[("lines", 2), ("errors", 1), ("app.log:lines", 2)],
    );
    append(&log, "thr");
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(
        get(&counts(&s, &fg), "lines"),
        2,
        "a partial line was counted"
    );
    append(&log, "ee ERROR\n");
    expect_counts(&s, &fg, &[("lines", 3), ("errors", 2)]);
    assert!(
        fg.log().contains("match [errors]") && fg.log().contains("three ERROR"),
        "{}",
        fg.log()
    );
    assert_eq!(fg.stop(), 0);
}

#[test]
fn rotation_by_rename_and_recreate_then_a_restart() {
    let mut s = sandbox(&["app.log"]);
    let log = s.path("app.log");
    append(&log, &numbered(0, 10));
    let mut fg = s.start(&[]);
    expect_counts(&s, &fg, &[("lines", 10), ("errors", 1)]);

    // logrotate's default: rename, the writer goes on in the old file until it reopens.
    let mut writer = OpenOptions::new().append(true).open(&log).unwrap();
    fs::rename(&log, s.path("app.log.1")).unwrap();
    writer.write_all(numbered(10, 5).as_bytes()).unwrap();
    writer.write_all(b"cut short").unwrap();
    drop(writer);
    append(&log, &numbered(15, 5));
    // 10 + 5 + the unfinished last line of the old file + 5 in the new one.
    expect_counts(&s, &fg, &[("lines", 21), ("errors", 2)]);
    assert_eq!(fg.stop(), 0);
    assert_eq!(follower_counter(&s, "rotations"), 1);

    // A restart goes on in the new file, and does not go back to the old one.
    append(&log, &numbered(20, 3));
    let mut fg = s.start(&[]);
    append(&log, &numbered(23, 7));
    expect_counts(
        &s,
        &fg,
        &[("lines", 31), ("errors", 3), ("app.log:lines", 31)],
    );
    assert_eq!(fg.stop(), 0);
}

#[test]
fn copytruncate_is_read_again_from_the_start() {
    let mut s = sandbox(&["app.log"]);
    let log = s.path("app.log");
    append(&log, &numbered(0, 20));
    let mut fg = s.start(&[]);
    expect_counts(&s, &fg, &[("lines", 20), ("errors", 2)]);

    // logrotate's copytruncate: copy, then truncate in place; the writer goes on.
    fs::copy(&log, s.path("app.log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, "after ERROR\nx\n");
    expect_counts(&s, &fg, &[("lines", 22), ("errors", 3)]);
    append(&log, &numbered(100, 10));
    expect_counts(&s, &fg, &[("lines", 32), ("errors", 4)]);
    assert_eq!(fg.stop(), 0);
    assert_eq!(follower_counter(&s, "truncations"), 1);
}

#[test]
fn restarts_in_the_middle_of_a_stream_count_every_line_once() {
    const BURSTS: usize = 30;
    const PER_BURST: usize = 100;
    let mut s = sandbox(&["a.log", "b.log"]);
    let (a, b) = (s.path("a.log"), s.path("b.log"));
    append(&a, "");
    append(&b, "");
    let mut fg = s.start(&[]);

    // A writer appends to both files in bursts, while the daemon is stopped and started.
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let written = Arc::clone(&written);
        let (a, b): (PathBuf, PathBuf) = (a.clone(), b.clone());
        std::thread::spawn(move || {
            for burst in 0..BURSTS {
                append(&a, &numbered(burst * PER_BURST, PER_BURST));
                append(&b, &numbered(burst * PER_BURST, PER_BURST / 2));
                written.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    for stop_after in [8, 18] {
        wait_for("the writer", || {
            (written.load(Ordering::SeqCst) >= stop_after).then_some(())
        });
        assert_eq!(fg.stop(), 0, "{}", fg.log());
        let saved = read_json(&s.pstate_file());
        assert!(saved["follower"]["files"].is_object(), "{saved:#}");
        std::thread::sleep(Duration::from_millis(30));
        fg = s.start(&[]);
        wait_for("both files resumed at their saved offsets", || {
            (fg.log().matches("(saved)").count() == 2).then_some(())
        });
    }
    writer.join().unwrap();
    let lines_a = (BURSTS * PER_BURST) as u64;
    let lines_b = (BURSTS * PER_BURST / 2) as u64;
    expect_counts(
        &s,
        &fg,
        &[
            ("lines", lines_a + lines_b),
            ("errors", (lines_a + lines_b) / 10),
            ("a.log:lines", lines_a),
            ("b.log:lines", lines_b),
        ],
    );
    assert_eq!(fg.stop(), 0);

    // The saved positions are the ends of the files.
    let saved = read_json(&s.pstate_file());
    for path in [&a, &b] {
        let entry = &saved["follower"]["files"][&path.display().to_string()];
        assert_eq!(
            entry["offset"],
            fs::metadata(path).unwrap().len(),
            "{saved:#}"
        );
    }
    // One more start with nothing new: nothing is read again.
    let mut fg = s.start(&[]);
    expect_counts(&s, &fg, &[("lines", lines_a + lines_b)]);
    assert_eq!(fg.stop(), 0);
}

#[test]
fn by_default_a_file_is_followed_from_its_end() {
    let mut s = Sandbox::new(TAIL, "tail");
    configure(&s, &["app.log"], "");
    let log = s.path("app.log");
    append(&log, "old ERROR\nold\nbeing writ");
    let mut fg = s.start(&[]);
    let open = format!("{}:open", log.display());
    wait_for("the follower to open the file", || {
        (s.dump_state(&fg)["components"]["follower"][&open] == true).then_some(())
    });
    append(&log, "ten ERROR\nnew\n");
    expect_counts(&s, &fg, &[("lines", 2), ("errors", 1)]);
    assert!(fg.log().contains("being written ERROR"), "{}", fg.log());
    assert_eq!(fg.stop(), 0);
}

#[test]
fn a_bad_section_is_a_configuration_error() {
    let s = Sandbox::new(TAIL, "tail");
    for (config, says) in [
        (r#"{"tail": {"files": []}}"#, "'files' lists no file"),
        (r#"{"tail": {"file": ["x"]}}"#, "unknown field `file`"),
        (
            r#"{"tail": {"files": ["x"]}, "count": {"patterns": {"e": "("}}}"#,
            "pattern 'e'",
        ),
    ] {
        s.write_config(config);
        let out = s.command(&["--no-daemon"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{config}: {stderr}");
        assert!(stderr.contains(says), "{config}: {stderr}");
    }
}

#[test]
fn the_example_configuration_is_valid() {
    let s = Sandbox::new(TAIL, "tail");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/tail.conf");
    s.write_config(&fs::read_to_string(example).unwrap());
    let out = s.command(&["--action", "config-view"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(view["tail"]["files"][0], "/tmp/tail-demo.log");
    assert_eq!(view["stats_interval"], 30);
}

#[test]
fn a_missing_tail_section_names_the_file_and_the_section() {
    let s = Sandbox::new(TAIL, "tail");
    s.write_config(r#"{"count": {"patterns": {"e": "E"}}}"#);
    let out = s.command(&["--no-daemon"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    let file = s.config_file().display().to_string();
    assert!(stderr.contains(&file), "{stderr}");
    assert!(stderr.contains("'tail' section is missing"), "{stderr}");
}

#[test]
fn help_shows_what_tail_does_its_sections_and_its_own_defaults() {
    let s = Sandbox::new(TAIL, "tail");
    let out = s.command(&["--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("follows files like `tail -F`"), "{help}");
    assert!(help.contains("'tail', 'count'"), "{help}");
    let option = |flag: &str| -> String {
        let i = help.find(&format!("\n  {flag} ")).unwrap();
        let rest = &help[i + 1..];
        rest[..rest.find("\n  --").unwrap_or(rest.len())].to_owned()
    };
    assert!(
        option("--stats-interval").contains("(default: 60)"),
        "{help}"
    );
    assert!(option("--name").contains("(default: tail)"), "{help}");
}

#[test]
fn a_first_run_killed_before_any_periodic_checkpoint_loses_no_line() {
    // start_at "end" (the default): what the file holds before the first start is skipped;
    // everything after is counted once, although the first run never saved by itself.
    let mut s = Sandbox::new(TAIL, "tail");
    configure(&s, &["a.log"], "");
    let a = s.path("a.log");
    append(&a, &numbered(0, 5));
    let mut fg = s.start(&["--pstate-interval", "3600"]);
    append(&a, &numbered(5, 10));
    expect_counts(&s, &fg, &[("lines", 10)]);
    fg.signal(nix::sys::signal::Signal::SIGKILL);
    let child = &mut fg.child;
    wait_for("the killed daemon", || child.try_wait().unwrap());
    // Written while it was down.
    append(&a, &numbered(15, 7));
    let mut fg = s.start(&["--pstate-interval", "3600"]);
    expect_counts(&s, &fg, &[("lines", 17), ("errors", 2)]);
    assert_eq!(fg.stop(), 0);
}
