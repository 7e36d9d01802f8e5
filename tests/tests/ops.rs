//! Operations: the `sigterm` policy, log targets (journald, syslog, `<N>` prefixes, JSON
//! lines, a program-installed logger) and the metrics file, driven from the outside.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{code, Env};
use nix::sys::signal::Signal;
use serde_json::Value;

#[test]
fn sigterm_terminate_skips_the_stop_handlers() {
    let env = Env::new("termdefault");
    let mut fg = env.spawn_fg(&[]);
    fg.signal(Signal::SIGTERM);
    assert_eq!(fg.wait(), code::OK, "{}", fg.stderr());
    let log = fg.stderr();
    assert!(log.contains("received SIGTERM: terminating"), "{log}");
    assert!(!log.contains("worker: stop handler runs"), "{log}");
}

#[test]
fn sigterm_stop_runs_the_stop_handlers() {
    let env = Env::new("termstop");
    let mut fg = env.spawn_fg(&["--sigterm", "stop"]);
    fg.signal(Signal::SIGTERM);
    assert_eq!(fg.wait(), code::OK, "{}", fg.stderr());
    let log = fg.stderr();
    assert!(log.contains("graceful stop requested"), "{log}");
    assert!(log.contains("worker: stop handler runs"), "{log}");
    assert!(log.contains("graceful stop initiated"), "{log}");
    assert!(!env.pid_file().exists(), "pidfile left behind");
}

#[test]
fn sigterm_stop_from_a_configuration_file_keeps_the_stop_timeout() {
    let env = Env::new("termhang");
    env.write_config(r#"{"sigterm": "stop", "worker": {"hang_on_stop": true}}"#);
    let mut fg = env.spawn_fg(&["--stop-timeout", "0.5"]);
    fg.signal(Signal::SIGTERM);
    // The hanging stop handler is cut off by the stop watchdog (the stop timeout, not the
    // 1 s margin of a terminating SIGTERM): exit 70, pidfile removed.
    assert_eq!(fg.wait(), code::WATCHDOG, "{}", fg.stderr());
    let log = fg.stderr();
    assert!(log.contains("worker: stop handler runs"), "{log}");
    assert!(log.contains("the stop timeout of 0.5 s"), "{log}");
    assert!(!env.pid_file().exists(), "pidfile left behind");
}

/// Datagrams from a socket bound at `path` until `found` says one is the one, at most
/// [`common::TIMEOUT`] twice over; returns every datagram read.
fn datagrams_until(socket: &UnixDatagram, mut found: impl FnMut(&[u8]) -> bool) -> Vec<Vec<u8>> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + common::TIMEOUT * 2;
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let d = buf[..n].to_vec();
            let done = found(&d);
            seen.push(d);
            if done {
                return seen;
            }
        }
    }
    let text: Vec<String> = seen
        .iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect();
    panic!("the awaited datagram did not come; got {text:#?}");
}

#[test]
fn a_program_installed_logger_is_used() {
    let env = Env::new("ownlog");
    let mut cmd = env.command(&["--no-daemon"]);
    cmd.env("TESTD_OWN_LOGGER", "1");
    let mut fg = env.spawn_command(cmd);
    fg.wait_started();
    fg.wait_log("own-logger INFO ownlog started");
    let log = fg.stderr();
    assert!(
        log.contains("own-logger INFO logging through the program's own logger"),
        "{log}"
    );
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
    // Every line went through the program's logger: none in the shell's formats.
    for line in fg.stderr().lines() {
        assert!(line.starts_with("own-logger "), "{line}");
    }
}

#[test]
fn under_systemd_console_lines_carry_priority_prefixes() {
    let env = Env::new("prefixed");
    let mut cmd = env.command(&["--no-daemon"]);
    cmd.env("INVOCATION_ID", "0123456789abcdef0123456789abcdef");
    let mut fg = env.spawn_command(cmd);
    fg.wait_log("<5>INFO: prefixed started (pid");
    fg.signal(Signal::SIGTERM);
    assert_eq!(fg.wait(), code::OK, "{}", fg.stderr());
    let log = fg.stderr();
    assert!(log.contains("<4>WARN: received SIGTERM"), "{log}");
    for line in log.lines() {
        let prio = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .map(|(n, _)| n);
        assert!(
            prio.is_some_and(|n| n.len() == 1 && ("3".."8").contains(&n)),
            "{line}"
        );
    }
}

#[test]
fn json_lines_parse() {
    let env = Env::new("jsonlog");
    let mut fg = env.spawn_fg(&["--log-format", "json", "--stats-interval", "0.1"]);
    fg.wait_log("\"component\":\"worker\"");
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
    let lines: Vec<Value> = fg
        .stderr()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() > 3);
    for line in &lines {
        let time = line["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && time.len() == 24, "{line}");
        assert!(
            line["level"].is_string() && line["target"].is_string(),
            "{line}"
        );
        assert!(line["message"].is_string(), "{line}");
        assert_eq!(line["fields"]["daemon"], "jsonlog", "{line}");
    }
    assert!(lines
        .iter()
        .any(|l| l["message"].as_str().unwrap().contains("jsonlog started")));
    assert!(lines
        .iter()
        .any(|l| l["fields"]["component"] == "worker"
            && l["message"].as_str().unwrap().contains("work")));
    // A line logged by a handler names the handler.
    let stop = lines
        .iter()
        .find(|l| l["message"] == "worker: stop handler runs")
        .expect("the stop handler's line");
    assert_eq!(stop["fields"]["component"], "worker", "{stop}");
    assert_eq!(stop["fields"]["event"], "stop", "{stop}");
}

#[test]
fn syslog_lines_reach_the_socket_from_the_daemon() {
    let env = Env::new("sysl");
    let path = env.path("log.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let sock_arg = format!("--syslog-socket={}", path.display());
    // Daemon mode: the socket is connected before forking and kept across it.
    let pid = env.start_daemon(&["--log-target", "syslog", &sock_arg]);
    let needle = format!("sysl[{pid}]: sysl started (pid {pid}");
    let seen = datagrams_until(&socket, |d| String::from_utf8_lossy(d).contains(&needle));
    let line = String::from_utf8(seen.last().unwrap().clone()).unwrap();
    // <daemon.notice>: facility 3 * 8 + severity 5; then an RFC 3164 time stamp.
    assert!(line.starts_with("<29>"), "{line}");
    let stamp = &line[4..19];
    assert_eq!(&stamp[3..4], " ", "{line}");
    assert_eq!(&stamp[9..10], ":", "{line}");
    common::signal(pid, Signal::SIGINT);
    datagrams_until(&socket, |d| {
        String::from_utf8_lossy(d).contains("sysl exits with code 0")
    });
    common::wait_gone(pid);
    assert!(!env.log_file().exists(), "the log file was written too");
}

/// The fields of one journald native-protocol datagram: `KEY=value\n`, or `KEY\n`, a
/// little-endian u64 length, the value and `\n` (values with newlines).
fn journal_fields(mut d: &[u8]) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').expect("a field ends");
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            d = &d[nl + 1..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = &d[nl + 9..nl + 9 + len];
            assert_eq!(d[nl + 9 + len], b'\n');
            fields.insert(key, String::from_utf8_lossy(value).into_owned());
            d = &d[nl + 10 + len..];
        }
    }
    fields
}

#[test]
fn journald_gets_native_entries_with_fields() {
    // systemd-journal-logger sends to /run/systemd/journal/socket, a fixed path: the daemon
    // runs in its own mount namespace with a directory of the test bound over /run, and
    // JOURNAL_STREAM naming its stderr, as systemd would set it.
    if !Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("SKIPPED: cannot create a mount namespace here (unshare -m)");
        return;
    }
    let env = Env::new("jrnl");
    let run = env.path("run");
    fs::create_dir_all(run.join("systemd/journal")).unwrap();
    let socket = UnixDatagram::bind(run.join("systemd/journal/socket")).unwrap();
    let inner = env.command(&["--no-daemon", "--stats-interval", "0.1"]);
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            "mount --bind \"$0\" /run && \
             JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) && export JOURNAL_STREAM && \
             exec \"$@\"",
        )
        .arg(&run)
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(env.dir());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut fg = env.spawn_command(cmd);
    let mut started = None;
    let mut stats = None;
    datagrams_until(&socket, |d| {
        let f = journal_fields(d);
        let message = f.get("MESSAGE").cloned().unwrap_or_default();
        if message.contains("jrnl started (pid") {
            started = Some(f);
        } else if f.get("COMPONENT").is_some_and(|c| c == "worker") {
            stats = Some(f);
        }
        started.is_some() && stats.is_some()
    });
    let started = started.unwrap();
    assert_eq!(started["PRIORITY"], "5", "{started:?}");
    assert_eq!(started["SYSLOG_IDENTIFIER"], "jrnl", "{started:?}");
    assert_eq!(started["SYSLOG_PID"], fg.pid.to_string(), "{started:?}");
    let stats = stats.unwrap();
    assert!(stats["MESSAGE"].contains("component 'worker'"), "{stats:?}");
    fg.signal(Signal::SIGINT);
    // A line logged by a handler names the handler: its component and the event it handles.
    let seen = datagrams_until(&socket, |d| {
        journal_fields(d)
            .get("MESSAGE")
            .is_some_and(|m| m == "worker: stop handler runs")
    });
    let stop = journal_fields(seen.last().unwrap());
    assert_eq!(stop["COMPONENT"], "worker", "{stop:?}");
    assert_eq!(stop["EVENT"], "stop", "{stop:?}");
    assert_eq!(stop["PRIORITY"], "5", "{stop:?}");
    assert_eq!(fg.wait(), code::OK, "{}", fg.stderr());
    // Everything went to the journal, nothing to stderr.
    assert_eq!(fg.stderr(), "");
}

/// `promtool check metrics` on `text`; panics with promtool's words when it fails.
fn promtool_check(text: &str) {
    use std::io::Write as _;
    use std::process::Stdio;
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
    assert!(out.status.success(), "promtool: {said}\n{text}");
    assert_eq!(said.trim(), "", "promtool has remarks:\n{said}\n{text}");
}

/// The samples of a metrics file: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// Waits until the file at `path` exists and differs from `previous`; returns its text.
fn next_version(path: &std::path::Path, previous: &str) -> String {
    common::wait_for("a new metrics file", || {
        fs::read_to_string(path)
            .ok()
            .filter(|t| t != previous && !t.is_empty())
    })
}

#[test]
fn the_metrics_file_passes_promtool_and_its_counters_only_grow() {
    let env = Env::new("metr");
    let path = env.path("metr.prom");
    let arg = format!("--metrics-file={}", path.display());
    let mut fg = env.spawn_fg(&[&arg, "--stats-interval", "0.1"]);
    let mut text = next_version(&path, "");
    let mut before = samples(&text);
    for _ in 0..3 {
        text = next_version(&path, &text);
        promtool_check(&text);
        let now = samples(&text);
        for (series, value) in &now {
            let counter = series.contains("_total{")
                || series.contains("_bucket{")
                || series.contains("_count{")
                || series.contains("_sum{");
            if let (true, Some(old)) = (counter, before.get(series)) {
                assert!(value >= old, "{series} went from {old} to {value}");
            }
        }
        before = now;
    }
    let work = r#"zendaemon_component_work_total{daemon="metr",component="worker"}"#;
    assert!(before[work] > 0.0, "{text}");
    let stats = r#"zendaemon_events_dispatched_total{daemon="metr",event="log_statistics"}"#;
    assert!(before[stats] >= 3.0, "{text}");
    assert!(text.contains(r#"zendaemon_timer_lateness_seconds_bucket{daemon="metr",le="+Inf"}"#));
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}

/// A small tmpfs at `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_leaves_the_previous_metrics_file_whole() {
    let env = Env::new("metrfull");
    let Some(fs_) = Tmpfs::mount(&env.path("small")) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let path = fs_.0.join("metrfull.prom");
    let arg = format!("--metrics-file={}", path.display());
    let mut fg = env.spawn_fg(&[&arg, "--stats-interval", "0.1"]);
    let text = next_version(&path, "");
    // Fill the file system to the last byte.
    let filler = fs_.0.join("filler");
    {
        use std::io::Write as _;
        let mut f = fs::File::create(&filler).unwrap();
        let block = [0u8; 4096];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&block[..1]).is_ok() {}
    }
    fg.wait_log("metrics not written");
    let kept = fs::read_to_string(&path).unwrap();
    promtool_check(&kept);
    // The file is one of the daemon's complete versions, and no temporary file is left.
    assert!(kept.ends_with('\n'));
    assert!(samples(&kept).len() >= samples(&text).len());
    let names: Vec<_> = fs::read_dir(&fs_.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // Room again: the next interval writes a new file.
    fs::remove_file(&filler).unwrap();
    let again = next_version(&path, &kept);
    promtool_check(&again);
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}
