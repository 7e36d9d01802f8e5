//! Bad command lines and bad configurations: the documented exit codes, a message naming what
//! was wrong, and nothing started (no fork, no pidfile, no other file).

mod common;

use std::fs;

use common::{code, read_pid, Env, Out};

/// Nothing was started: no file of the daemon exists.
fn nothing_started(env: &Env, what: &str, out: &Out) {
    for p in [
        env.pid_file(),
        env.runlog_dir(),
        env.state_file(),
        env.pstate_file(),
        env.log_file(),
    ] {
        assert!(
            !p.exists(),
            "{what}: '{}' was created: {out:?}",
            p.display()
        );
    }
    assert_eq!(out.stdout, "", "{what}");
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let env = Env::new("flags");
    let cases: [(&[&str], &str); 8] = [
        (&["--umask", "abc"], "--umask"),
        (&["--umask=1000"], "--umask"),
        (&["--stats-interval", "-1"], "--stats-interval"),
        (&["--runlog-interval=0"], "--runlog-interval"),
        (&["--stop-timeout", "soon"], "--stop-timeout"),
        (&["--no-such-flag"], "--no-such-flag"),
        (&["--action", "explode"], "--action"),
        (&["--no-daemon=yes"], "--no-daemon"),
    ];
    for (args, flag) in cases {
        // In daemon mode and in the foreground: both refuse before anything else.
        for extra in [&[][..], &["--no-daemon"][..]] {
            if flag == "--no-daemon" && !extra.is_empty() {
                continue;
            }
            let mut all = args.to_vec();
            all.extend_from_slice(extra);
            let out = env.run(&all);
            assert_eq!(out.code, code::USAGE, "{all:?}: {out:?}");
            assert!(
                out.stderr.contains(flag),
                "{all:?} does not name {flag}: {out:?}"
            );
            nothing_started(&env, &format!("{all:?}"), &out);
        }
    }
    // A stray positional argument too.
    let out = env.run(&["stray"]);
    assert_eq!(out.code, code::USAGE, "{out:?}");
    assert!(out.stderr.contains("stray"), "{out:?}");
    nothing_started(&env, "stray", &out);
}

#[test]
fn help_exits_0() {
    let env = Env::new("help");
    let out = env.run(&["--help"]);
    assert_eq!(out.code, code::OK, "{out:?}");
    for flag in ["--pid-file", "--stats-interval", "--action", "--no-daemon"] {
        assert!(out.stdout.contains(flag), "{flag}: {out:?}");
    }
    assert!(!env.pid_file().exists());
}

#[test]
fn bad_configurations_exit_78_naming_the_problem() {
    let env = Env::new("conf");
    let file = env.config_file().to_string_lossy().into_owned();
    // (file, what the message names, whether the shell itself refuses it: then the actions,
    // which never configure components, refuse it as well)
    let cases: [(&str, &str, bool); 7] = [
        ("{ \"worker\": ", file.as_str(), true),
        ("[1, 2]", file.as_str(), true),
        (r#"{"bogus_key": true}"#, "bogus_key", true),
        (r#"{"umask": "abc"}"#, "umask", true),
        (r#"{"stats_interval": -5}"#, "stats_interval", true),
        (
            r#"{"worker": {"no_such_setting": 1}}"#,
            "no_such_setting",
            false,
        ),
        // serde names the section and the bad value here, not the field.
        (r#"{"worker": {"work_interval_ms": "soon"}}"#, "soon", false),
    ];
    for (text, named, shell) in cases {
        env.write_config(text);
        for extra in [&[][..], &["--no-daemon"][..]] {
            let out = env.run(extra);
            assert_eq!(out.code, code::CONFIG, "{text} {extra:?}: {out:?}");
            assert!(
                out.stderr.contains(named),
                "{text}: the message does not name '{named}': {out:?}"
            );
            if !shell {
                assert!(out.stderr.contains("worker"), "{text}: {out:?}");
            }
            nothing_started(&env, text, &out);
        }
        // Actions read the same configuration and refuse it the same way.
        if shell {
            let out = env.action("status", &[]);
            assert_eq!(out.code, code::CONFIG, "{text}: {out:?}");
            assert!(out.stderr.contains(named), "{text}: {out:?}");
        }
    }
}

#[test]
fn a_bad_file_in_the_configuration_directory_is_named() {
    let env = Env::new("confdir");
    let bad = env.config_dir().join("50-broken.json.conf");
    fs::write(&bad, "{ not json").unwrap();
    let out = env.run(&[]);
    assert_eq!(out.code, code::CONFIG, "{out:?}");
    assert!(out.stderr.contains("50-broken.json.conf"), "{out:?}");
    nothing_started(&env, "broken directory file", &out);
    // Other names in the directory are not configuration files.
    fs::remove_file(&bad).unwrap();
    fs::write(env.config_dir().join("notes.txt"), "{ not json").unwrap();
    let out = env.action("config-view", &[]);
    assert_eq!(out.code, code::OK, "{out:?}");
}

#[test]
fn a_missing_configuration_file_given_on_the_command_line_is_an_error() {
    let env = Env::new("missing");
    fs::remove_file(env.config_file()).unwrap();
    let out = env.run(&[]);
    assert_eq!(out.code, code::CONFIG, "{out:?}");
    assert!(
        out.stderr.contains(&*env.config_file().to_string_lossy()),
        "{out:?}"
    );
    nothing_started(&env, "missing file", &out);
}

#[test]
fn the_pidfile_directory_must_exist() {
    // Not a configuration error, but a start that fails before forking: the launcher reports
    // it with a non-zero code and no daemon is left.
    let env = Env::new("nodir");
    let pid_file = env.path("missing-dir/nodir.pid");
    let cmd = env.command_except(
        &["--pid-file"],
        &[&format!("--pid-file={}", pid_file.display())],
    );
    let out = env.run_command(cmd, "nodir");
    assert_ne!(out.code, code::OK, "{out:?}");
    assert!(out.stderr.contains("missing-dir"), "{out:?}");
    assert_eq!(read_pid(&pid_file), None);
}
