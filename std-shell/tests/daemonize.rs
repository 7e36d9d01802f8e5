//! Full daemonization, driven from the outside.
//!
//! This binary (`harness = false`) is both the test runner and the probe: run with
//! `ZENDAEMON_PROBE=<mode>`, it acquires a pidfile, daemonizes, writes facts about the daemon
//! (PID, session, working directory, umask, descriptors, credentials) into a file it kept
//! open, and reports ready or failure. The tests run it, as a launcher, from a process with
//! no other thread (libtest's threads would make `daemonize` refuse), one test at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{fstat, Mode};
use nix::unistd::{self, Pid};
use zendaemon::daemonize::{daemonize, resolve_user, DaemonOptions};
use zendaemon::error::exit;
use zendaemon::pidfile::{self, Pidfile, Probe};

const MODE_ENV: &str = "ZENDAEMON_PROBE";
const DIR_ENV: &str = "ZENDAEMON_PROBE_DIR";

fn main() {
    if let Some(mode) = std::env::var_os(MODE_ENV) {
        probe(&mode.to_string_lossy());
    }
    let tests: &[(&str, fn())] = &[
        (
            "launcher_exits_0_after_ready_and_the_daemon_is_set_up",
            ready,
        ),
        ("failure_after_the_fork_reaches_the_launcher", fail),
        ("a_daemon_that_exits_unready_fails_the_launcher", exit_early),
        ("a_failing_step_reaches_the_launcher", bad_work_dir),
        ("a_threaded_process_is_refused_before_forking", threads),
        ("chroot_and_privilege_drop", jail),
        ("dev_null_on_a_standard_descriptor_stays_open", stdin_closed),
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        println!("test {name} ...");
        if std::panic::catch_unwind(test).is_err() {
            println!("test {name} ... FAILED");
            failed.push(*name);
        } else {
            println!("test {name} ... ok");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// The probe.

fn probe(mode: &str) -> ! {
    // SAFETY: nothing opened yet; what the test runner (cargo) passed down is inherited.
    unsafe { zendaemon::daemonize::close_inherited(&[]) }.unwrap();
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("ZENDAEMON_PROBE_DIR"));
    let mut facts = File::create(dir.join("facts")).unwrap();
    let mut pidfile = Pidfile::acquire(dir.join("probe.pid")).unwrap();
    // Owned by this program, without close-on-exec (nix's `open`): daemonize leaves it alone.
    let no_cloexec = nix::fcntl::open("/dev/zero", OFlag::O_RDONLY, Mode::empty()).unwrap();
    // Owned, close-on-exec (std), not in keep_fds: left alone too, and still writes its file.
    let mut owned = File::create(dir.join("owned")).unwrap();

    let mut opts = DaemonOptions {
        work_dir: Some(dir.join("work")),
        umask: Some(0o027),
        keep_fds: vec![facts.as_raw_fd(), pidfile.as_raw_fd()],
        ..Default::default()
    };
    match mode {
        "bad-work-dir" => opts.work_dir = Some(dir.join("missing")),
        "threads" => {
            std::thread::spawn(|| loop {
                std::thread::park();
            });
        }
        "stdin-closed" => {
            // SAFETY: nothing owns descriptor 0 (std's stdin borrows it); the next descriptor
            // opened, here the readiness pipe's read end and then /dev/null, takes it.
            unsafe { libc::close(0) };
        }
        "jail" => {
            opts.chroot_dir = Some(dir.clone());
            opts.work_dir = Some("/work".into());
            opts.user = Some(resolve_user("nobody").unwrap());
        }
        _ => {}
    }
    let readiness = match daemonize(&opts) {
        Ok(readiness) => readiness,
        Err(e) => {
            eprintln!("probe: {e}");
            std::process::exit(e.exit_code());
        }
    };

    // The daemon.
    let pid = unistd::getpid();
    pidfile.hold().unwrap();
    let mut out = BTreeMap::new();
    out.insert("pid", pid.to_string());
    out.insert("ppid", unistd::getppid().to_string());
    out.insert("sid", unistd::getsid(None).unwrap().to_string());
    out.insert("pgid", unistd::getpgrp().to_string());
    out.insert(
        "cwd",
        std::env::current_dir().unwrap().display().to_string(),
    );
    let mask = nix::sys::stat::umask(Mode::empty());
    nix::sys::stat::umask(mask);
    out.insert("umask", format!("{:o}", mask.bits()));
    out.insert("uid", unistd::getuid().to_string());
    out.insert("euid", unistd::geteuid().to_string());
    out.insert("gid", unistd::getgid().to_string());
    out.insert("egid", unistd::getegid().to_string());
    let groups: Vec<String> = unistd::getgroups()
        .unwrap()
        .iter()
        .map(|g| g.to_string())
        .collect();
    out.insert("groups", groups.join(","));
    out.insert("regain_root", unistd::setuid(0.into()).is_ok().to_string());
    out.insert(
        "facts_visible_at_root",
        Path::new("/facts").exists().to_string(),
    );
    out.insert("keep_facts", facts.as_raw_fd().to_string());
    out.insert("keep_pidfile", pidfile.as_raw_fd().to_string());
    out.insert("no_cloexec", no_cloexec.as_raw_fd().to_string());
    owned.write_all(b"written after daemonizing\n").unwrap();
    out.insert("owned", owned.as_raw_fd().to_string());
    // Every open descriptor, by F_GETFD (works without /proc inside the chroot).
    let mut fds = Vec::new();
    for fd in 0..1024 {
        // SAFETY: F_GETFD only reads descriptor flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            fds.push(fd);
            // SAFETY: the descriptor is open (checked just above) and not closed meanwhile.
            let st = fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).unwrap();
            out.insert(
                Box::leak(format!("fd.{fd}").into_boxed_str()),
                format!("{:o}:{}", st.st_mode & libc::S_IFMT, st.st_rdev),
            );
        }
    }
    // SAFETY: F_GETFD only reads descriptor flags.
    let flags0 = unsafe { libc::fcntl(0, libc::F_GETFD) };
    out.insert(
        "cloexec.0",
        (flags0 != -1 && flags0 & libc::FD_CLOEXEC != 0).to_string(),
    );
    let fds: Vec<String> = fds.iter().map(|fd| fd.to_string()).collect();
    out.insert("fds", fds.join(","));
    let text: String = out.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    facts.write_all(text.as_bytes()).unwrap();

    match mode {
        "fail" => {
            readiness
                .fail_with_code(exit::CONFIG, "probe was told to fail")
                .unwrap();
            pidfile.remove().unwrap();
            std::process::exit(exit::CONFIG);
        }
        "exit-early" => {
            drop(readiness);
            pidfile.remove().unwrap();
            std::process::exit(0);
        }
        _ => readiness.ready().unwrap(),
    }
    loop {
        unistd::pause(); // until SIGTERM, whose default action ends us
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// A probe run: its directory, the launcher's exit status and stderr.
struct Run {
    dir: tempfile::TempDir,
    status: ExitStatus,
    stderr: String,
}

impl Run {
    fn start(mode: &str) -> Run {
        Run::start_prepared(mode, |_| {})
    }

    fn start_prepared(mode: &str, prepare: impl FnOnce(&Path)) -> Run {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("work")).unwrap();
        prepare(dir.path());
        // The launcher's stderr goes to a file, not a pipe: if the daemon kept a copy of the
        // descriptor, a pipe would never see EOF and the test would hang instead of failing.
        let stderr_path = dir.path().join("launcher.stderr");
        let status = Command::new(std::env::current_exe().unwrap())
            .env(MODE_ENV, mode)
            .env(DIR_ENV, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).unwrap())
            .status()
            .unwrap();
        let stderr = fs::read_to_string(&stderr_path).unwrap();
        Run {
            dir,
            status,
            stderr,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn facts(&self) -> BTreeMap<String, String> {
        fs::read_to_string(self.path("facts"))
            .unwrap()
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }
}

/// Kills the daemon when a test ends (passing or not), then waits until it is gone.
struct Daemon {
    pid: Pid,
    pidfile: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = kill(self.pid, Signal::SIGTERM);
        wait_until_unlocked(&self.pidfile);
    }
}

/// Blocks until no process holds the pidfile's run lock (the daemon has exited): a blocking
/// read lock of its first byte (`F_SETLKW`), no polling.
fn wait_until_unlocked(path: &Path) {
    if let Ok(file) = File::open(path) {
        // SAFETY: a zeroed flock struct is valid; F_SETLKW on a descriptor we own blocks
        // until the daemon's write lock of byte 0 is gone.
        unsafe {
            let mut lock: libc::flock = std::mem::zeroed();
            lock.l_type = libc::F_RDLCK as i16;
            lock.l_whence = libc::SEEK_SET as i16;
            lock.l_len = 1;
            libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &mut lock);
        }
    }
}

fn num(facts: &BTreeMap<String, String>, key: &str) -> i32 {
    facts[key]
        .parse()
        .unwrap_or_else(|_| panic!("{key}={}", facts[key]))
}

fn dev_null_rdev() -> String {
    fs::metadata("/dev/null").unwrap().rdev().to_string()
}

fn ready() {
    let run = Run::start("ready");
    assert!(run.status.success(), "{:?} {}", run.status, run.stderr);
    assert_eq!(run.stderr, "");
    let facts = run.facts();
    let pid = num(&facts, "pid");
    let daemon = Daemon {
        pid: Pid::from_raw(pid),
        pidfile: run.path("probe.pid"),
    };

    // The pidfile: the daemon's PID, locked by it.
    assert_eq!(
        fs::read_to_string(run.path("probe.pid")).unwrap(),
        format!("{pid}\n")
    );
    assert_eq!(
        pidfile::probe(run.path("probe.pid")),
        Probe::Running { pid }
    );

    // Not our child, not the launcher's (it exited), not a session leader, own session.
    let me = std::process::id() as i32;
    assert_ne!(num(&facts, "ppid"), me);
    assert_ne!(pid, me);
    let sid = num(&facts, "sid");
    assert_ne!(sid, pid, "the daemon must not be a session leader");
    assert_ne!(sid, unistd::getsid(None).unwrap().as_raw());
    assert_eq!(
        num(&facts, "pgid"),
        sid,
        "in the group the intermediate process led"
    );

    // Working directory and umask.
    let work = fs::canonicalize(run.path("work")).unwrap();
    assert_eq!(facts["cwd"], work.display().to_string());
    assert_eq!(facts["umask"], "27");

    // Descriptors: 0-2 on /dev/null; every descriptor a value owns as it was (the kept ones,
    // the owned file, the one without close-on-exec), and the readiness pipe.
    let null = format!("{:o}:{}", libc::S_IFCHR, dev_null_rdev());
    for fd in 0..=2 {
        assert_eq!(facts[&format!("fd.{fd}")], null, "fd {fd}");
    }
    let owned = num(&facts, "owned");
    assert!(
        facts[&format!("fd.{owned}")].starts_with(&format!("{:o}:", libc::S_IFREG)),
        "the owned file was redirected"
    );
    assert_eq!(
        fs::read_to_string(run.path("owned")).unwrap(),
        "written after daemonizing\n"
    );
    let no_cloexec = num(&facts, "no_cloexec");
    let zero = fs::metadata("/dev/zero").unwrap().rdev();
    assert_eq!(
        facts[&format!("fd.{no_cloexec}")],
        format!("{:o}:{zero}", libc::S_IFCHR),
        "the owned descriptor without close-on-exec was closed or redirected"
    );
    let keep_facts = num(&facts, "keep_facts");
    let keep_pidfile = num(&facts, "keep_pidfile");
    for fd in [keep_facts, keep_pidfile] {
        assert!(facts[&format!("fd.{fd}")].starts_with(&format!("{:o}:", libc::S_IFREG)));
    }
    let open: BTreeSet<RawFd> = facts["fds"]
        .split(',')
        .map(|f| f.parse().unwrap())
        .collect();
    let expected: BTreeSet<RawFd> = [0, 1, 2, keep_facts, keep_pidfile, owned, no_cloexec].into();
    // Besides: the readiness pipe, and the pidfile's directory, held open (safepath).
    let extra: Vec<_> = open
        .difference(&expected)
        .filter(|fd| !facts[&format!("fd.{fd}")].starts_with(&format!("{:o}:", libc::S_IFDIR)))
        .collect();
    assert_eq!(extra.len(), 1, "only the readiness pipe besides: {open:?}");
    let pipe = facts[&format!("fd.{}", extra[0])].clone();
    assert!(pipe.starts_with(&format!("{:o}:", libc::S_IFIFO)), "{pipe}");

    // The daemon's pidfile is left to the daemon: stopping it leaves the lock free.
    drop(daemon);
    assert!(matches!(
        pidfile::probe(run.path("probe.pid")),
        Probe::Stale { .. } | Probe::NotRunning
    ));
}

fn fail() {
    let run = Run::start("fail");
    assert_eq!(run.status.code(), Some(exit::CONFIG), "{}", run.stderr);
    assert!(
        run.stderr
            .ends_with(": daemon failed to start: probe was told to fail\n"),
        "{:?}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1);
    // The daemon removed its pidfile before exiting.
    wait_until_unlocked(&run.path("probe.pid"));
    assert!(!run.path("probe.pid").exists());
}

fn exit_early() {
    let run = Run::start("exit-early");
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .ends_with(": daemon exited before it was ready\n"),
        "{:?}",
        run.stderr
    );
}

fn bad_work_dir() {
    let run = Run::start("bad-work-dir");
    assert_eq!(run.status.code(), Some(exit::CANT_CREATE), "{}", run.stderr);
    let missing = run.path("missing");
    let expected = format!(
        "daemon failed to start: cannot change directory to '{}': No such file or directory",
        missing.display()
    );
    assert!(run.stderr.contains(&expected), "{:?}", run.stderr);
    // The daemon died without a clean exit (it may still be on its way out after its
    // report), before it took the run lock: its pidfile is left, empty and unlocked.
    wait_until_unlocked(&run.path("probe.pid"));
    assert!(matches!(
        pidfile::probe(run.path("probe.pid")),
        Probe::Stale { .. } | Probe::NotRunning
    ));
}

fn stdin_closed() {
    // Descriptor 0 was closed before daemonizing, so /dev/null lands on 0 in the daemon: it
    // must stay open (not closed with the temporary handle), without close-on-exec, and 1
    // and 2 must point at it too.
    let run = Run::start("stdin-closed");
    assert!(run.status.success(), "{:?} {}", run.status, run.stderr);
    let facts = run.facts();
    let daemon = Daemon {
        pid: Pid::from_raw(num(&facts, "pid")),
        pidfile: run.path("probe.pid"),
    };
    let null = format!("{:o}:{}", libc::S_IFCHR, dev_null_rdev());
    for fd in 0..=2 {
        assert_eq!(
            facts.get(&format!("fd.{fd}")),
            Some(&null),
            "fd {fd}: {facts:?}"
        );
    }
    assert_eq!(facts["cloexec.0"], "false");
    drop(daemon);
}

fn threads() {
    let run = Run::start("threads");
    assert_eq!(run.status.code(), Some(exit::FAILURE), "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with("probe: daemon failed to start: cannot daemonize while 2 threads run"),
        "{:?}",
        run.stderr
    );
    assert_eq!(fs::read_to_string(run.path("facts")).unwrap(), "");
}

fn jail() {
    if !unistd::geteuid().is_root() {
        println!("skipped: chroot and setuid need root");
        return;
    }
    if resolve_user("nobody").is_err() {
        println!("skipped: no user 'nobody'");
        return;
    }
    // The jail's root must be searchable by 'nobody'.
    let run = Run::start_prepared("jail", |dir| {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    });
    assert!(run.status.success(), "{:?} {}", run.status, run.stderr);
    let facts = run.facts();
    let daemon = Daemon {
        pid: Pid::from_raw(num(&facts, "pid")),
        pidfile: run.path("probe.pid"),
    };
    let nobody = resolve_user("nobody").unwrap().to_string();
    let primary = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .gid
        .to_string();
    assert_eq!(facts["cwd"], "/work");
    assert_eq!(facts["facts_visible_at_root"], "true");
    assert_eq!(facts["uid"], nobody);
    assert_eq!(facts["euid"], nobody);
    assert_eq!(facts["gid"], primary);
    assert_eq!(facts["egid"], primary);
    assert_eq!(facts["groups"], primary);
    assert_eq!(facts["regain_root"], "false");
    drop(daemon);
}
