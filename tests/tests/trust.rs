//! Trust at the edges: another local user (`nobody`, the attacker, or the service user a
//! daemon runs as) cannot steer root's daemon through its files; a fork-only child cannot hold
//! the launcher or the pidfile lock; configuration values fail before the fork with 78.
//!
//! The daemon runs as root (the tests run as root, as CI does); every step of the attacker
//! runs in a child process dropped to `nobody` with `setpriv`.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{alive, code, read_pid, signal, wait_gone, wait_until, Env, Out};
use nix::sys::signal::Signal;

/// `nobody`'s user ID.
fn nobody() -> u32 {
    let out = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `program args…` run as `nobody` (no supplementary groups).
fn as_nobody(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        program,
    ])
    .args(args)
    .stdin(Stdio::null());
    cmd
}

/// Runs a shell script as `nobody`; returns its exit code.
fn attacker(script: &str) -> i32 {
    let status = as_nobody("/bin/sh", &["-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    status.code().unwrap_or(-1)
}

/// A directory owned by `nobody` with `mode`, inside the test directory, which becomes
/// traversable (0711) so `nobody` can reach it.
fn nobody_dir(env: &Env, name: &str, mode: u32) -> PathBuf {
    fs::set_permissions(env.dir(), fs::Permissions::from_mode(0o711)).unwrap();
    let dir = env.path(name);
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(nobody()), Some(nobody())).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
    dir
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Runs `testd` with the path flags in `replace` given these values instead of the test's.
fn run_with(env: &Env, replace: &[(&str, &Path)], extra: &[&str]) -> Out {
    let drop: Vec<&str> = replace.iter().map(|(flag, _)| *flag).collect();
    let mut args: Vec<String> = Vec::new();
    for (flag, value) in replace {
        args.push(flag.to_string());
        args.push(s(value));
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run_command(env.command_except(&drop, &args), "run");
    // If an old build started a daemon here, it must not outlive the test.
    if let Some((_, pid_file)) = replace.iter().find(|(f, _)| *f == "--pid-file") {
        if let Some(pid) = read_pid(pid_file) {
            env.track(pid);
        }
    } else if let Some(pid) = read_pid(&env.pid_file()) {
        env.track(pid);
    }
    out
}

/// A process of ours that is killed when the test ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills a PID (which is no child of ours) at the end of the test.
struct KillLater(i32);

impl Drop for KillLater {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
}

/// The PID the log names in `forked a sleeper (pid N)`.
fn sleeper(log: &str) -> Option<i32> {
    let rest = log.split("forked a sleeper (pid ").nth(1)?;
    rest.split(')').next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Issue 10, item 1: a pidfile in a directory the service user can write.

#[test]
fn a_pidfile_directory_of_another_user_is_refused_with_77() {
    let env = Env::new("foreign");
    let svc = nobody_dir(&env, "svc", 0o755);
    let pid_file = svc.join("foreign.pid");
    let out = run_with(&env, &[("--pid-file", &pid_file)], &[]);
    assert_eq!(out.code, 77, "{out:?}");
    assert!(
        out.stderr.contains(&s(&svc)) && out.stderr.contains("uid 65534"),
        "{out:?}"
    );
    assert!(!pid_file.exists());
}

#[test]
fn the_service_user_cannot_make_root_signal_another_process() {
    let env = Env::new("steer");
    let svc = nobody_dir(&env, "svc", 0o755);
    let pid_file = svc.join("steer.pid");
    // The service user prepares "its" pidfile before root starts the daemon.
    assert_eq!(attacker(&format!("printf '1\\n' > {}", s(&pid_file))), 0);
    let mut victim = Guard(Command::new("sleep").arg("300").spawn().unwrap());
    let victim_pid = victim.0.id() as i32;

    // The persistent state is written as the service user: it goes into its directory.
    let pstate = svc.join("steer.pstate");
    let flags = [
        ("--pid-file", pid_file.as_path()),
        ("--pstate-file", pstate.as_path()),
    ];
    let out = run_with(&env, &flags, &["--user", "nobody"]);
    assert_eq!(out.code, code::OK, "{out:?}");
    let daemon = read_pid(&pid_file).unwrap();
    let meta = fs::metadata(&pid_file).unwrap();
    // The service user writes the victim's PID into the pidfile, or, since it cannot, puts a
    // file of its own naming the victim at the path.
    let p = s(&pid_file);
    attacker(&format!(
        "printf '{victim_pid}\\n' > {p} || {{ rm -f {p}; printf '{victim_pid}\\n' > {p}; }}"
    ));
    assert_eq!(read_pid(&pid_file), Some(victim_pid));

    for action in ["signal-term", "stop"] {
        let args = [
            "--pid-file",
            &p,
            "--action",
            action,
            "--user",
            "nobody",
            "--stop-timeout",
            "1",
        ];
        let out = env.run_command(env.command_except(&["--pid-file"], &args), action);
        if action == "signal-term" {
            assert_eq!(out.code, code::LSB_DEAD_PIDFILE, "{out:?}");
        }
        assert!(!out.stdout.contains("sent"), "{out:?}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        victim.0.try_wait().unwrap().is_none(),
        "root signalled the process the service user named"
    );
    // Root's daemon did not keep the file the service user had made: it replaced it with
    // its own, which only root may open.
    assert_eq!((meta.uid(), meta.mode() & 0o077), (0, 0), "{meta:?}");
    assert!(alive(daemon));
    signal(daemon, Signal::SIGTERM);
    wait_gone(daemon);
}

// ---------------------------------------------------------------------------------------------
// Issue 10, item 2: a lock squatted on a stale pidfile.

#[test]
fn a_lock_squatted_on_a_stale_pidfile_blocks_neither_status_nor_start() {
    let env = Env::new("squat");
    fs::set_permissions(env.dir(), fs::Permissions::from_mode(0o711)).unwrap();
    let public = env.path("public");
    fs::create_dir(&public).unwrap();
    fs::set_permissions(&public, fs::Permissions::from_mode(0o755)).unwrap();
    let pid_file = public.join("squat.pid");
    // A stale pidfile, readable by everyone (as older versions and many daemons leave them).
    fs::write(&pid_file, "99999999\n").unwrap();
    fs::set_permissions(&pid_file, fs::Permissions::from_mode(0o644)).unwrap();

    // nobody locks it both ways: an exclusive flock, and an fcntl read lock of every byte.
    let _flock = Guard(
        as_nobody("flock", &["-x", &s(&pid_file), "sleep", "300"])
            .spawn()
            .unwrap(),
    );
    let ready = env.path("fcntl-squatter.ready");
    let script = format!(
        "import fcntl, sys, time\nf = open('{}')\nfcntl.lockf(f, fcntl.LOCK_SH)\n\
         sys.stdout.write('locked')\nsys.stdout.flush()\ntime.sleep(300)\n",
        s(&pid_file)
    );
    let _fcntl = Guard(
        as_nobody("/usr/bin/python3", &["-c", &script])
            .stdout(fs::File::create(&ready).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_until("the fcntl squatter", || {
        fs::read_to_string(&ready).is_ok_and(|t| t.contains("locked"))
    });
    wait_until("the flock squatter", || {
        !Command::new("flock")
            .args(["-n", "-x", &s(&pid_file), "true"])
            .status()
            .unwrap()
            .success()
    });

    let flags = [("--pid-file", pid_file.as_path())];
    let status = run_with(&env, &flags, &["--action", "status"]);
    assert_eq!(status.code, code::LSB_DEAD_PIDFILE, "{status:?}");
    assert!(status.stdout.contains("is not running"), "{status:?}");

    let out = run_with(&env, &flags, &[]);
    assert_eq!(out.code, code::OK, "{out:?}");
    let daemon = read_pid(&pid_file).unwrap();
    let status = run_with(&env, &flags, &["--action", "status"]);
    assert_eq!(status.code, code::LSB_RUNNING, "{status:?}");
    assert!(status.stdout.contains(&format!("running (pid {daemon})")));
    signal(daemon, Signal::SIGTERM);
    wait_gone(daemon);
}

// ---------------------------------------------------------------------------------------------
// Issue 10, item 3: symbolic links planted by the service user.

#[test]
fn symbolic_links_at_the_log_path_and_the_runlog_directory_are_refused() {
    let env = Env::new("links");
    let svc = nobody_dir(&env, "svc", 0o755);
    let secret = env.path("secret");
    fs::write(&secret, "root only\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let log = svc.join("links.log");
    assert_eq!(attacker(&format!("ln -s {} {}", s(&secret), s(&log))), 0);

    let out = run_with(&env, &[("--log-file", &log)], &["--user", "nobody"]);
    assert_eq!(out.code, 77, "{out:?}");
    assert!(
        out.stderr.contains("symbolic link") && out.stderr.contains(&s(&log)),
        "{out:?}"
    );
    assert_eq!(fs::read_to_string(&secret).unwrap(), "root only\n");

    let elsewhere = env.path("root-only-dir");
    fs::create_dir(&elsewhere).unwrap();
    let runlogs = svc.join("runlogs");
    assert_eq!(
        attacker(&format!("ln -s {} {}", s(&elsewhere), s(&runlogs))),
        0
    );
    let out = run_with(&env, &[("--runlog-dir", &runlogs)], &["--user", "nobody"]);
    assert_eq!(out.code, 77, "{out:?}");
    assert!(out.stderr.contains("symbolic link"), "{out:?}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Issue 10, item 4: predictable temporary names.

#[test]
fn temporary_names_planted_in_a_shared_directory_do_not_stop_state_writes() {
    let env = Env::new("plant");
    fs::set_permissions(env.dir(), fs::Permissions::from_mode(0o711)).unwrap();
    let shared = env.path("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let state = shared.join("plant.state");
    let out = run_with(&env, &[("--state-file", &state)], &[]);
    assert_eq!(out.code, code::OK, "{out:?}");
    let daemon = read_pid(&env.pid_file()).unwrap();

    // Every name the old scheme (`.<name>.<pid>.<n>.tmp`) would try, planted by nobody.
    let script = format!(
        "cd {} && for n in $(seq 0 63); do : > .plant.state.{daemon}.$n.tmp; done",
        s(&shared)
    );
    assert_eq!(attacker(&script), 0);
    signal(daemon, Signal::SIGUSR2);
    wait_until("the state file", || state.exists());
    assert_eq!(common::read_json(&state)["pid"], daemon);
    let temps = fs::read_dir(&shared).unwrap().count();
    assert_eq!(temps, 65, "a temporary file of ours was left behind");
    signal(daemon, Signal::SIGTERM);
    wait_gone(daemon);
}

// ---------------------------------------------------------------------------------------------
// Issue 15, items 7 and 8 (last bullet): stale temporary files, explicit modes.

#[test]
fn stale_temporary_files_are_removed_at_start_and_private_files_are_0600() {
    let env = Env::new("tidy");
    fs::create_dir(env.runlog_dir()).unwrap();
    let stale = [
        env.path(".tidy.state.99999999.0011223344556677.tmp"),
        env.path(".tidy.pstate.99999999.3.tmp"), // the old counter form
        env.runlog_dir()
            .join(".20260101000000.99999999.runlog.99999999.ab.tmp"),
    ];
    let unrelated = env.path(".other.99999999.ff.tmp");
    for p in stale.iter().chain([&unrelated]) {
        fs::write(p, vec![b'x'; 4096]).unwrap();
    }
    let daemon = env.start_daemon(&[]);
    for p in &stale {
        assert!(!p.exists(), "{} is left", p.display());
    }
    assert!(unrelated.exists(), "a file of another program was removed");

    env.dump_state(daemon);
    let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&env.state_file()), 0o600);
    signal(daemon, Signal::SIGINT);
    wait_gone(daemon);
    assert_eq!(mode(&env.pstate_file()), 0o600);
    let runlogs = env.runlogs();
    assert!(!runlogs.is_empty());
    assert!(runlogs.iter().all(|r| mode(r) == 0o644), "{runlogs:?}");
}

// ---------------------------------------------------------------------------------------------
// Issue 10, item 6, and issue 15, item 6: a `--user` run.

#[test]
fn a_user_run_reopens_its_log_and_leaves_status_not_running() {
    let env = Env::new("svcrun");
    // The test directory stays root's (0700): nobody can reach its files by path at all.
    fs::set_permissions(env.dir(), fs::Permissions::from_mode(0o700)).unwrap();
    let svc = env.path("svc");
    fs::create_dir(&svc).unwrap();
    std::os::unix::fs::chown(&svc, Some(nobody()), Some(nobody())).unwrap();
    let log = svc.join("svcrun.log");
    let state = svc.join("svcrun.state");
    let flags = [
        ("--log-file", log.as_path()),
        ("--state-file", state.as_path()),
        ("--pstate-file", &svc.join("svcrun.pstate")),
        ("--runlog-dir", &svc.join("runlogs")),
    ];
    let out = run_with(&env, &flags, &["--user", "nobody"]);
    assert_eq!(out.code, code::OK, "{out:?}");
    let daemon = read_pid(&env.pid_file()).unwrap();
    assert_eq!(
        common::proc_status(daemon, "Uid")
            .unwrap()
            .split_whitespace()
            .next(),
        Some("65534")
    );

    // logrotate moves the log away; SIGHUP opens a new one in the held directory.
    fs::rename(&log, svc.join("svcrun.log.1")).unwrap();
    signal(daemon, Signal::SIGHUP);
    wait_until("lines in the reopened log", || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("reload"))
    });
    signal(daemon, Signal::SIGUSR2);
    wait_until("the state file written as nobody", || state.exists());

    signal(daemon, Signal::SIGINT);
    wait_gone(daemon);
    let status = env.action("status", &["--user", "nobody"]);
    assert_eq!(status.code, code::LSB_NOT_RUNNING, "{status:?}");
    // The rotated file has the lines from before the reopen, and none after.
    let rotated = fs::read_to_string(svc.join("svcrun.log.1")).unwrap();
    assert!(
        rotated.contains("started") && !rotated.contains("SIGUSR2"),
        "{rotated}"
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 10, item 7: configuration values fail before the fork, with 78 and the file's name.

#[test]
fn configuration_values_fail_before_the_fork_with_78_naming_the_file() {
    let env = Env::new("codes");
    let config = s(&env.config_file());
    for (text, key) in [
        (r#"{"chroot_dir": "x"}"#, "chroot_dir"),
        (r#"{"group": "\u0000"}"#, "group"),
        (r#"{"user": "\u001b[31mred"}"#, "user"),
        (r#"{"user": "no-such-user-zd"}"#, "user"),
        (r#"{"group": "no-such-group-zd"}"#, "group"),
        (r#"{"work_dir": "/no/such/dir"}"#, "work_dir"),
        (r#"{"log_file": "/tmp/a\u0000b"}"#, "log_file"),
    ] {
        env.write_config(text);
        let drop = ["--work-dir", "--log-file"];
        let out = env.run_command(env.command_except(&drop, &[]), "start");
        assert_eq!(out.code, code::CONFIG, "{text}: {out:?}");
        assert!(
            out.stderr.contains(&config) && out.stderr.contains(key),
            "{text}: {out:?}"
        );
        assert_eq!(out.stderr.lines().count(), 1, "{text}: {out:?}");
        assert!(
            !out.stderr.bytes().any(|b| b < 0x20 && b != b'\n'),
            "{text}: control bytes in {:?}",
            out.stderr
        );
        assert!(!env.pid_file().exists(), "{text}: a pidfile was created");
        assert!(!env.log_file().exists(), "{text}: the log was opened");
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 15, item 3: a fork-only child holds neither the launcher nor the lock.

#[test]
fn a_fork_only_child_does_not_hold_the_launcher() {
    let env = Env::new("orphan");
    env.write_config(r#"{"worker": {"fork_sleeper_ms": 300000, "exit_in_activate": true}}"#);
    let out = env.run(&[]);
    let _sleeper = sleeper(&env.log()).map(KillLater);
    assert_eq!(out.code, code::FAILURE, "{out:?}");
    assert!(
        out.stderr.contains("daemon exited before it was ready") && out.stderr.contains("code 3"),
        "{out:?}"
    );
}

#[test]
fn a_fork_only_child_does_not_keep_the_lock() {
    let env = Env::new("heir");
    env.write_config(r#"{"worker": {"fork_sleeper_ms": 300000}}"#);
    let first = env.start_daemon(&[]);
    let sleeper_pid = sleeper(&env.log()).expect("the sleeper's PID in the log");
    let _sleeper = KillLater(sleeper_pid);
    signal(first, Signal::SIGKILL);
    wait_gone(first);
    assert!(alive(sleeper_pid));

    let status = env.action("status", &[]);
    assert_eq!(status.code, code::LSB_DEAD_PIDFILE, "{status:?}");
    env.write_config("{}");
    let second = env.start_daemon(&[]);
    let status = env.action("status", &[]);
    assert_eq!(status.code, code::LSB_RUNNING, "{status:?}");
    assert!(status.stdout.contains(&format!("running (pid {second})")));
    signal(second, Signal::SIGTERM);
    wait_gone(second);
}

#[test]
fn the_launcher_gives_up_after_the_start_timeout_and_says_what_it_waited_for() {
    let env = Env::new("slow");
    env.write_config(r#"{"worker": {"activate_delay_ms": 3000}}"#);
    let out = env.run(&["--start-timeout", "0.3"]);
    assert_eq!(out.code, code::FAILURE, "{out:?}");
    assert!(
        out.stderr.contains("start_timeout") && out.stderr.contains("ready"),
        "{out:?}"
    );
    // It was still starting, and does start.
    let daemon = common::wait_for("the slow daemon's PID", || {
        read_pid(&env.pid_file()).filter(|&p| alive(p))
    });
    env.track(daemon);
    signal(daemon, Signal::SIGTERM);
    wait_gone(daemon);
}

// ---------------------------------------------------------------------------------------------
// Issue 15, item 8 (third bullet): the lock comes before any user code.

#[test]
fn a_second_instance_is_refused_before_it_opens_its_log() {
    let env = Env::new("early");
    let daemon = env.start_daemon(&[]);
    let second_log = env.path("second.log");
    let out = run_with(&env, &[("--log-file", &second_log)], &[]);
    assert_eq!(out.code, code::ALREADY_RUNNING, "{out:?}");
    assert!(out
        .stderr
        .contains(&format!("already running (pid {daemon})")));
    assert!(!second_log.exists(), "the refused instance opened its log");
    signal(daemon, Signal::SIGTERM);
    wait_gone(daemon);
}
