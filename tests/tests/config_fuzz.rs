//! A fuzz pass over configuration files (issue 10): 1,000 documents from a deterministic
//! generator (fixed seed) mix valid keys with wrong types, huge and tiny numbers, control
//! bytes, unknown keys, nested junk and broken JSON. Each goes through the shell's validation
//! in this process (`Config::load` and the start's `preflight` checks): it must be accepted,
//! or refused as a configuration error (exit code 78) in one line naming the file, and never
//! panic. A sample of 40 goes through the real binary (`testd --action config-check`, which
//! also runs the `worker` component's own check): exit 0, or 78 with one line naming the file;
//! nothing else, no hang.

mod common;

use std::fs;
use std::path::Path;

use common::{code, Env};
use serde_json::{json, Map, Value};
use zendaemon::cli::{Action, Cli};
use zendaemon::paths::DefaultPaths;
use zendaemon::{preflight, Config};

const DOCUMENTS: usize = 1000;
const SAMPLE_EVERY: usize = 25;

/// xorshift64*: small, deterministic, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Keys: the shell's (except `action`, which the command line sets), the component's, and
/// some nobody declares.
const KEYS: &[&str] = &[
    "no_daemon",
    "pid_file",
    "work_dir",
    "chroot_dir",
    "umask",
    "user",
    "group",
    "state_file",
    "runlog_dir",
    "stats_interval",
    "runlog_interval",
    "stop_timeout",
    "start_timeout",
    "parallel",
    "precise_timers",
    "precise_max_spin",
    "config_file",
    "config_dir",
    "pstate_file",
    "log_file",
    "log_level",
    "input",
    "limit",
    "name",
    "worker",
    "worker",
    "unknown",
    "Stats_Interval",
    "",
    "\u{0}",
    "log_level\n",
];

fn string(rng: &mut Rng) -> String {
    let pieces = [
        "",
        "/",
        "/tmp",
        "/no/such/dir",
        "x",
        "root",
        "nobody",
        "0",
        "65534",
        "4294967295",
        "-1",
        "022",
        "0o777",
        "999",
        "info",
        "TRACE",
        "loud",
        "\u{0}",
        "\n",
        "\u{1b}[31m",
        "\u{7f}",
        "é",
        "\u{202e}",
        "a/../b",
        "..",
        "%s%n",
        "\\",
        "\"",
    ];
    let mut s = String::new();
    for _ in 0..rng.below(4) {
        let piece: &str = pieces[rng.below(pieces.len())];
        s.push_str(piece);
    }
    s
}

fn value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 2 { 8 } else { 11 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(*rng.pick(&[0i64, 1, -1, 18, 511, 512, 300, i64::MIN, i64::MAX])),
        3 => json!(*rng.pick(&[0.0005f64, 0.001, 0.5, 1e9, 1e15, 1e300, -0.0, 2.5e-320])),
        4 => json!(u64::MAX),
        5..=7 => Value::String(string(rng)),
        8 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                let key = match rng.below(3) {
                    0 => string(rng),
                    _ => rng
                        .pick(&[
                            "work_interval_ms",
                            "hang_on_stop",
                            "state_marker",
                            "stop_after",
                            "fork_sleeper_ms",
                        ])
                        .to_string(),
                };
                m.insert(key, value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// One configuration file's text.
fn document(rng: &mut Rng) -> String {
    let mut m = Map::new();
    for _ in 0..rng.below(6) {
        let key = rng.pick(KEYS).to_string();
        // Keep the daemon's own files inside the test directory: the checks write nothing,
        // but a sampled start-up path must not wander.
        m.insert(key, value(rng, 0));
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(m)).unwrap();
    match rng.below(12) {
        0 => text.truncate(text.len() / 2), // broken JSON
        1 => text = format!("# a comment\n// another\n{text}"),
        2 => text = "[1, 2]".into(),
        3 => text.push('\u{0}'),
        _ => {}
    }
    text
}

fn defaults(dir: &Path, config_file: &Path) -> DefaultPaths {
    DefaultPaths {
        pid_file: dir.join("f.pid"),
        runlog_dir: dir.join("runlogs"),
        state_file: dir.join("f.state"),
        pstate_file: dir.join("f.pstate"),
        log_file: dir.join("f.log"),
        config_file: config_file.to_path_buf(),
        config_dir: dir.join("no-conf.d"),
        runtime_dir: None,
        old_pstate_file: dir.join("old.pstate"),
        pstate_dir: dir.join("pstate.d"),
    }
}

#[test]
fn a_thousand_generated_configurations_are_accepted_or_refused_with_78() {
    let env = Env::new("fuzz");
    let file = env.path("fuzz.conf");
    let shown = file.to_string_lossy().into_owned();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut accepted, mut refused, mut sampled) = (0, 0, 0);
    for i in 0..DOCUMENTS {
        let text = document(&mut rng);
        fs::write(&file, &text).unwrap();
        let cli = Cli {
            config_file: Some(file.clone()),
            action: Some(Action::ConfigCheck),
            ..Cli::default()
        };
        let paths = defaults(env.dir(), &file);
        let result = std::panic::catch_unwind(|| {
            Config::load("fuzz", &cli, &paths, &["worker"])
                .and_then(|c| preflight::check(&c).map(|_| ()))
        });
        match result {
            Err(_) => panic!("document {i} panicked:\n{text}"),
            Ok(Ok(())) => accepted += 1,
            Ok(Err(e)) => {
                refused += 1;
                let msg = e.to_string();
                assert_eq!(e.exit_code(), code::CONFIG, "document {i}: {msg}\n{text}");
                assert!(msg.contains(&shown), "document {i}: {msg}\n{text}");
                assert!(!msg.contains('\n'), "document {i}: {msg:?}");
                assert!(!msg.bytes().any(|b| b < 0x20), "document {i}: {msg:?}");
            }
        }

        if i % SAMPLE_EVERY == 0 {
            sampled += 1;
            env.write_config(&text);
            let out = env.action("config-check", &[]);
            match out.code {
                code::OK => assert!(out.stdout.contains("configuration OK"), "{out:?}"),
                code::CONFIG => {
                    assert_eq!(
                        out.stderr.lines().count(),
                        1,
                        "document {i}: {out:?}\n{text}"
                    );
                    assert!(
                        out.stderr
                            .contains(&env.config_file().to_string_lossy().into_owned()),
                        "document {i}: {out:?}\n{text}"
                    );
                }
                other => panic!("document {i}: exit code {other}: {out:?}\n{text}"),
            }
        }
    }
    // The generator must exercise both outcomes.
    assert!(
        accepted > 20 && refused > 500,
        "{accepted} accepted, {refused} refused"
    );
    assert_eq!(sampled, DOCUMENTS / SAMPLE_EVERY);
}
