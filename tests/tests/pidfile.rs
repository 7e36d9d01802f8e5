//! The pidfile lock: one instance per pidfile, a stale file taken over, a crowd of starts that
//! leaves exactly one running and never clobbers its pidfile.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use common::{alive, code, read_pid, signal, wait_gone, wait_until, Env};
use nix::sys::signal::Signal;

#[test]
fn a_second_instance_is_refused_and_the_pidfile_is_left_untouched() {
    let env = Env::new("lock");
    let pid = env.start_daemon(&[]);
    let before = fs::metadata(env.pid_file()).unwrap();
    let content = fs::read(env.pid_file()).unwrap();
    assert_eq!(content, format!("{pid}\n").into_bytes());
    // The running daemon wrote its start checkpoint before it was ready.
    let pstate = fs::metadata(env.pstate_file()).unwrap();

    // In daemon mode and in the foreground alike.
    for extra in [&[][..], &["--no-daemon"][..]] {
        let out = env.run(extra);
        assert_eq!(out.code, code::ALREADY_RUNNING, "{extra:?}: {out:?}");
        assert!(
            out.stderr.contains(&format!("already running (pid {pid})")),
            "{extra:?}: {out:?}"
        );
        let after = fs::metadata(env.pid_file()).unwrap();
        assert_eq!((after.ino(), after.dev()), (before.ino(), before.dev()));
        assert_eq!(fs::read(env.pid_file()).unwrap(), content);
        assert!(alive(pid));
    }
    // The refused starts wrote nothing else either.
    assert!(env.runlogs().is_empty());
    let after = fs::metadata(env.pstate_file()).unwrap();
    assert_eq!(
        after.ino(),
        pstate.ino(),
        "a refused start wrote the pstate"
    );

    signal(pid, Signal::SIGTERM);
    wait_gone(pid);
    wait_until("the pidfile to be removed", || !env.pid_file().exists());
}

#[test]
fn a_stale_pidfile_left_by_kill_9_is_taken_over() {
    let env = Env::new("stale");
    let first = env.start_daemon(&[]);
    signal(first, Signal::SIGKILL);
    wait_gone(first);
    // The file stays, with the dead PID, unlocked.
    assert_eq!(read_pid(&env.pid_file()), Some(first));
    let status = env.action("status", &[]);
    assert_eq!(status.code, code::LSB_DEAD_PIDFILE, "{status:?}");

    let second = env.start_daemon(&[]);
    assert_ne!(second, first);
    assert_eq!(read_pid(&env.pid_file()), Some(second));
    let status = env.action("status", &[]);
    assert_eq!(status.code, code::LSB_RUNNING, "{status:?}");
    assert!(
        status.stdout.contains(&format!("running (pid {second})")),
        "{status:?}"
    );
    // The foreground takes a stale file over as well.
    signal(second, Signal::SIGKILL);
    wait_gone(second);
    let mut fg = env.spawn_fg(&[]);
    assert_eq!(read_pid(&env.pid_file()), Some(fg.pid));
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
    assert!(!env.pid_file().exists());
}

/// Reads the pidfile in a loop until told to stop; returns every distinct content seen.
fn watch(path: PathBuf, done: Arc<AtomicBool>) -> thread::JoinHandle<Vec<String>> {
    thread::spawn(move || {
        let mut seen = Vec::new();
        while !done.load(Ordering::Relaxed) {
            if let Ok(text) = fs::read_to_string(&path) {
                if seen.last() != Some(&text) {
                    seen.push(text);
                }
            }
            thread::yield_now();
        }
        seen
    })
}

/// The PIDs in what [`watch`] saw (the first line counts: a shorter PID written over a longer
/// one leaves a tail until the file is cut); an empty file (created, not yet written) only
/// before the first PID.
fn pids_seen(seen: &[String]) -> Vec<i32> {
    let first = seen
        .iter()
        .position(|s| !s.is_empty())
        .unwrap_or(seen.len());
    seen[first..]
        .iter()
        .map(|s| {
            s.lines()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("the pidfile held {s:?}; everything seen: {seen:?}"))
        })
        .collect()
}

#[test]
fn sixteen_foreground_starts_at_once_leave_one_running() {
    let env = Env::new("crowd");
    let done = Arc::new(AtomicBool::new(false));
    let watcher = watch(env.pid_file(), done.clone());
    let mut all: Vec<_> = (0..16).map(|_| env.spawn_fg_unready(&[])).collect();

    // Fifteen give up with 75; one runs.
    wait_until("15 of the 16 to exit", || {
        all.iter_mut()
            .map(|fg| !fg.running())
            .filter(|&done| done)
            .count()
            >= 15
    });
    // The refused ones are reaped by now (`running` did it); the winner still runs.
    let (mut running, refused): (Vec<_>, Vec<_>) = all.drain(..).partition(|fg| alive(fg.pid));
    assert_eq!(running.len(), 1, "not exactly one instance runs");
    let winner = running.pop().unwrap();
    winner.wait_started();
    for mut fg in refused {
        let code = fg.wait();
        let stderr = fg.stderr();
        assert_eq!(code, code::ALREADY_RUNNING, "{stderr}");
        assert!(stderr.contains("already running"), "{stderr}");
    }
    assert_eq!(read_pid(&env.pid_file()), Some(winner.pid));
    done.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    // From the first PID written on, the file only ever named the winner.
    let pids: BTreeSet<i32> = pids_seen(&seen).into_iter().collect();
    assert_eq!(pids, BTreeSet::from([winner.pid]), "{seen:?}");

    let mut winner = winner;
    assert_eq!(winner.stop(), code::OK, "{}", winner.stderr());
    assert!(!env.pid_file().exists());
}

#[test]
fn sixteen_daemon_starts_at_once_leave_one_running() {
    let env = Env::new("crowd-bg");
    let done = Arc::new(AtomicBool::new(false));
    let watcher = watch(env.pid_file(), done.clone());
    let mut launchers: Vec<_> = (0..16)
        .map(|_| env.spawn_command(env.command(&[])))
        .collect();
    let codes: Vec<i32> = launchers.iter_mut().map(|l| l.wait()).collect();
    let winners: Vec<_> = launchers
        .iter()
        .zip(&codes)
        .filter(|(_, &c)| c == code::OK)
        .map(|(l, _)| l.pid)
        .collect();
    assert_eq!(winners.len(), 1, "{codes:?}");
    for (l, &c) in launchers.iter().zip(&codes).filter(|(_, &c)| c != code::OK) {
        let stderr = l.stderr();
        assert_eq!(c, code::ALREADY_RUNNING, "{stderr}");
        assert!(stderr.contains("already running"), "{stderr}");
    }
    let daemon = read_pid(&env.pid_file()).expect("a PID in the pidfile");
    env.track(daemon);
    assert!(alive(daemon));
    assert!(
        !winners.contains(&daemon),
        "the launcher's PID stayed in the pidfile"
    );
    done.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    // The winning launcher writes its own PID when it takes the lock; the daemon replaces it
    // after the last fork. No refused instance ever wrote the file.
    let pids = pids_seen(&seen);
    assert!(
        pids.iter().all(|p| *p == daemon || *p == winners[0]),
        "the pidfile named a refused instance: {seen:?} (daemon {daemon}, launcher {})",
        winners[0]
    );
    assert_eq!(pids.last(), Some(&daemon), "{seen:?}");

    signal(daemon, Signal::SIGTERM);
    wait_gone(daemon);
    wait_until("the pidfile to be removed", || !env.pid_file().exists());
}

/// The instance pidfiles of a `--parallel` daemon: `<name>.<pid>.pid`, with their PIDs.
fn instance_pidfiles(env: &Env) -> Vec<(PathBuf, i32)> {
    let prefix = format!("{}.", env.name);
    let mut found: Vec<(PathBuf, i32)> = fs::read_dir(env.dir())
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name()?.to_str()?.to_owned();
            let pid = name
                .strip_prefix(&prefix)?
                .strip_suffix(".pid")?
                .parse()
                .ok()?;
            Some((path, pid))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn parallel_instances_have_their_own_pidfiles_and_actions_reach_all() {
    let env = Env::new("par");
    let launches: Vec<_> = (0..2).map(|_| env.run(&["--parallel"])).collect();
    for out in &launches {
        assert_eq!(out.code, code::OK, "{out:?}");
    }
    let instances = instance_pidfiles(&env);
    assert_eq!(instances.len(), 2, "{instances:?}");
    assert!(!env.pid_file().exists(), "the shared pidfile was created");
    for (path, pid) in &instances {
        env.track(*pid);
        assert!(alive(*pid));
        assert_eq!(read_pid(path), Some(*pid), "{}", path.display());
        assert!(launches.iter().all(|l| l.pid != *pid));
    }

    let status = env.action("status", &["--parallel"]);
    assert_eq!(status.code, code::LSB_RUNNING, "{status:?}");
    for (_, pid) in &instances {
        assert!(
            status
                .stdout
                .contains(&format!("par is running (pid {pid})")),
            "{status:?}"
        );
    }
    // Each instance writes its own state file.
    let usr2 = env.action("signal-usr2", &["--parallel"]);
    assert_eq!(usr2.code, code::OK, "{usr2:?}");
    for (_, pid) in &instances {
        let state = env.path(&format!("par.{pid}.state"));
        wait_until("an instance's state file", || state.exists());
        assert_eq!(common::read_json(&state)["pid"], *pid);
    }

    let stop = env.action("stop", &["--parallel"]);
    assert_eq!(stop.code, code::OK, "{stop:?}");
    for (path, pid) in &instances {
        wait_gone(*pid);
        assert!(!path.exists(), "{} left behind", path.display());
    }
    let status = env.action("status", &["--parallel"]);
    assert_eq!(status.code, code::LSB_NOT_RUNNING, "{status:?}");
}
