//! Start-up soundness: descriptors owned by values survive daemonizing, inherited ones do not;
//! no window in which a signal kills a daemon whose PID is already published; an inherited
//! signal mask does not deafen it; privileged resources are taken before the privilege drop,
//! and sockets passed by socket activation reach the component that asks for them.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{alive, code, proc_status, read_pid, signal, wait_gone, wait_until, Env, TIMEOUT};
use nix::libc;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};

/// The echo test daemon.
fn echod() -> &'static str {
    env!("CARGO_BIN_EXE_echod")
}

/// `echod` with every path flag of `env` and `extra`, in a clean environment.
fn echod_command(env: &Env, program: &str, pre: &[&str], extra: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(pre)
        .args(env.path_args())
        .args(extra)
        .current_dir(env.dir())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env("XDG_RUNTIME_DIR", env.path("xdg-runtime"))
        .env("XDG_CONFIG_HOME", env.path("xdg-config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Runs a launcher to its end; returns its exit code and standard error.
fn launch(mut cmd: Command) -> (i32, String) {
    let out = cmd.output().expect("run the launcher");
    (
        common::exit_code(out.status),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends `line` to the echo service at `addr` and returns what came back.
fn echo_round_trip(addr: std::net::SocketAddr, line: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the echo service");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(line.as_bytes()).unwrap();
    let mut back = String::new();
    BufReader::new(stream).read_line(&mut back).unwrap();
    back
}

#[test]
fn descriptors_owned_before_daemonizing_survive_it_and_work() {
    // `configure` (before the fork) opens a file with nix's open, a dup of another, and a
    // Unix socket, all three without close-on-exec; the daemon uses them after daemonizing.
    let env = Env::new("fds");
    let dir = env.path("probe");
    fs::create_dir(&dir).unwrap();
    env.write_config(&format!(
        r#"{{"worker": {{"fd_probe_dir": "{}", "work_interval_ms": 10}}}}"#,
        dir.display()
    ));
    let pid = env.start_daemon(&[]);
    let line = format!("started {pid}\n");
    wait_until("the start line through both descriptors", || {
        fs::read_to_string(dir.join("nix-open.txt")).is_ok_and(|t| t == line)
            && fs::read_to_string(dir.join("dup.txt")).is_ok_and(|t| t == line)
    });
    let mut conn = UnixStream::connect(dir.join("probe.sock")).expect("connect to the socket");
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, format!("hello from {pid}\n"));
    assert!(!env.log().contains("fd probe"), "{}", env.log());
    signal(pid, Signal::SIGTERM);
    wait_gone(pid);
}

#[test]
fn descriptors_inherited_from_the_launching_process_are_closed() {
    let env = Env::new("inherit");
    let (read, write) = nix::unistd::pipe().unwrap();
    let write_fd = write.as_raw_fd();
    let mut cmd = env.command(&[]);
    // SAFETY: dup2 and fcntl are async-signal-safe; the descriptors stay open in the parent.
    unsafe {
        cmd.pre_exec(move || {
            // An inherited descriptor without close-on-exec, as a careless parent leaves one.
            if libc::dup2(write_fd, 9) == -1 || libc::fcntl(9, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = env.run_command(cmd, "inherit");
    assert_eq!(out.code, code::OK, "{out:?}");
    drop(write);
    let pid = read_pid(&env.pid_file()).unwrap();
    env.track(pid);
    // With the launcher gone, nobody holds the pipe's write end: its reader sees the end.
    let mut reader = fs::File::from(read);
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(alive(pid));
    signal(pid, Signal::SIGTERM);
    wait_gone(pid);
}

#[test]
fn sighup_racing_the_start_up_never_kills_the_daemon() {
    // 100 starts; each time SIGHUP goes out the moment the pidfile names the daemon.
    let env = Env::new("race");
    env.write_config(r#"{"worker": {"work_interval_ms": 0}}"#);
    for round in 1..=100 {
        let mut launcher = env.spawn_command(env.command(&[]));
        // Look without pausing: the window, where there is one, lasts microseconds.
        let deadline = std::time::Instant::now() + TIMEOUT;
        let pid = loop {
            if let Some(pid) = read_pid(&env.pid_file()).filter(|&p| p != launcher.pid) {
                break pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no PID in the pidfile"
            );
            std::hint::spin_loop();
        };
        let sent = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP);
        env.track(pid);
        let code = launcher.wait();
        assert!(sent.is_ok(), "round {round}: the daemon was gone already");
        assert_eq!(
            code,
            code::OK,
            "round {round}: {}\n{}",
            launcher.stderr(),
            env.log()
        );
        wait_until("the SIGHUP to be handled", || {
            env.log().matches("received SIGHUP").count() >= round
        });
        assert!(
            alive(pid),
            "round {round}: SIGHUP killed it:\n{}",
            env.log()
        );
        signal(pid, Signal::SIGTERM);
        wait_gone(pid);
        wait_until("the pidfile to go", || !env.pid_file().exists());
    }
}

#[test]
fn a_daemon_started_with_sigint_and_sigterm_blocked_still_stops() {
    for daemon_mode in [false, true] {
        let env = Env::new(&format!("masked-{daemon_mode}"));
        let mut cmd = env.command(if daemon_mode { &[] } else { &["--no-daemon"] });
        // SAFETY: sigprocmask and signal(SIG_IGN) are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let mut set = SigSet::empty();
                set.add(Signal::SIGINT);
                set.add(Signal::SIGTERM);
                sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
                // Ignored too, as `nohup` and shells leave some of them.
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                Ok(())
            });
        }
        if daemon_mode {
            let out = env.run_command(cmd, "masked");
            assert_eq!(out.code, code::OK, "{out:?}");
            let pid = read_pid(&env.pid_file()).unwrap();
            env.track(pid);
            assert_eq!(
                proc_status(pid, "SigBlk").as_deref(),
                Some("0000000000000000")
            );
            signal(pid, Signal::SIGINT);
            wait_gone(pid);
        } else {
            let mut fg = env.spawn_command(cmd);
            fg.wait_started();
            assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
        }
        assert!(!env.pid_file().exists(), "daemon mode {daemon_mode}");
    }
}

#[test]
fn socket_activation_hands_the_listening_socket_to_the_component() {
    let env = Env::new("activated");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    // systemd's protocol: the socket at descriptor 3, LISTEN_FDS, LISTEN_FDNAMES, and
    // LISTEN_PID naming the process itself: a shell sets it to its own PID ($$) and execs.
    let mut cmd = echod_command(
        &env,
        "/bin/sh",
        &[
            "-c",
            r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#,
            echod(),
        ],
        &[],
    );
    cmd.env("LISTEN_FDS", "1").env("LISTEN_FDNAMES", "echo");
    // SAFETY: dup2 and fcntl are async-signal-safe; `listener` outlives the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if (fd != 3 && libc::dup2(fd, 3) == -1) || libc::fcntl(3, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (code, stderr) = launch(cmd);
    drop(listener);
    assert_eq!(code, code::OK, "{stderr}\n{}", env.log());
    let pid = read_pid(&env.pid_file()).unwrap();
    env.track(pid);
    assert!(env.log().contains("(from systemd)"), "{}", env.log());
    assert_eq!(echo_round_trip(addr, "activated\n"), "activated\n");
    signal(pid, Signal::SIGTERM);
    wait_gone(pid);
}

#[test]
fn a_low_port_bound_in_acquire_serves_as_nobody() {
    let env = Env::new("lowport");
    // A free port below 1024 (we run as root).
    let port = (900..1000)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1000");
    env.write_config(&format!(r#"{{"echo": {{"listen": "127.0.0.1:{port}"}}}}"#));
    let cmd = echod_command(&env, echod(), &[], &["--user", "nobody"]);
    let (code, stderr) = launch(cmd);
    assert_eq!(code, code::OK, "{stderr}\n{}", env.log());
    let pid = read_pid(&env.pid_file()).unwrap();
    env.track(pid);
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
    let uids = proc_status(pid, "Uid").unwrap();
    assert!(
        uids.split_whitespace().all(|u| u == nobody.to_string()),
        "still {uids}"
    );
    assert_eq!(
        proc_status(pid, "CapEff").as_deref(),
        Some("0000000000000000")
    );
    let addr = ([127, 0, 0, 1], port).into();
    assert_eq!(echo_round_trip(addr, "low\n"), "low\n");
    signal(pid, Signal::SIGTERM);
    wait_gone(pid);
}

#[test]
fn user_0_with_another_group_is_refused() {
    let env = Env::new("rootgroup");
    let out = env.run(&["--user", "0", "--group", "65534"]);
    assert_eq!(out.code, code::CONFIG, "{out:?}");
    assert!(out.stderr.contains("every privilege of root"), "{out:?}");
    assert!(!env.pid_file().exists());
    // Root alone, written out, is fine.
    let mut fg = env.spawn_fg(&["--user", "root"]);
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}
