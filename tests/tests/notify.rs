//! systemd's notify protocol, received on a datagram socket bound in the test's directory.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::{code, read_pid, Env, TIMEOUT};
use nix::sys::signal::Signal;

/// A socket standing in for systemd's.
struct Manager {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Manager {
    fn bind(env: &Env) -> (Manager, String) {
        let path = env.path("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        (
            Manager {
                socket,
                seen: Vec::new(),
            },
            path.to_string_lossy().into_owned(),
        )
    }

    /// The next message that has the assignment `line`; the ones before it are returned too.
    fn until(&mut self, line: &str) -> (Vec<String>, String) {
        let deadline = Instant::now() + TIMEOUT;
        let mut before = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8(buf[..n].to_vec()).expect("UTF-8 message");
                    self.seen.push(msg.clone());
                    if msg.lines().any(|l| l == line) {
                        return (before, msg);
                    }
                    before.push(msg);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("recv: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "no '{line}' within {TIMEOUT:?}; messages so far: {:?}",
                self.seen
            );
        }
    }
}

fn has(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

fn value<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

#[test]
fn ready_reloading_and_stopping_arrive_in_the_foreground() {
    let env = Env::new("notified");
    let (mut manager, address) = Manager::bind(&env);
    let mut cmd = env.command(&["--no-daemon"]);
    cmd.env("NOTIFY_SOCKET", &address);
    let mut fg = env.spawn_command(cmd);

    let (before, ready) = manager.until("READY=1");
    assert!(before.iter().all(|m| !has(m, "STOPPING=1")), "{before:?}");
    assert_eq!(
        value(&ready, "MAINPID"),
        Some(fg.pid.to_string().as_str()),
        "{ready}"
    );
    fg.wait_started();

    // A reload: RELOADING=1 with the monotonic time, then READY=1.
    fg.signal(Signal::SIGHUP);
    let (_, reloading) = manager.until("RELOADING=1");
    let usec: u64 = value(&reloading, "MONOTONIC_USEC")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading}"));
    assert!(usec > 0);
    manager.until("READY=1");

    // A refused reload still ends with READY=1 (the old configuration goes on).
    env.write_config("{ broken");
    fg.signal(Signal::SIGHUP);
    manager.until("RELOADING=1");
    let (_, ready) = manager.until("READY=1");
    assert!(
        value(&ready, "STATUS").is_some_and(|s| s.contains("refused")),
        "{ready}"
    );
    env.write_config("{}");

    // The stop.
    fg.signal(Signal::SIGINT);
    let (before, _) = manager.until("STOPPING=1");
    assert!(before.iter().all(|m| !has(m, "READY=1")), "{before:?}");
    assert_eq!(fg.wait(), code::OK, "{}", fg.stderr());
}

#[test]
fn the_daemon_itself_reports_ready_in_daemon_mode() {
    let env = Env::new("notified-bg");
    let (mut manager, address) = Manager::bind(&env);
    let mut cmd = env.command(&[]);
    cmd.env("NOTIFY_SOCKET", &address);
    let out = env.run_command(cmd, "launch");
    assert_eq!(out.code, code::OK, "{out:?}");
    let pid = read_pid(&env.pid_file()).expect("the daemon's PID");
    env.track(pid);
    let (_, ready) = manager.until("READY=1");
    assert_eq!(
        value(&ready, "MAINPID"),
        Some(pid.to_string().as_str()),
        "{ready}"
    );
    common::signal(pid, Signal::SIGTERM);
    manager.until("STOPPING=1");
    common::wait_gone(pid);
}

#[test]
fn the_service_manager_watchdog_is_pinged() {
    let env = Env::new("pinged");
    let (mut manager, address) = Manager::bind(&env);
    let mut cmd = env.command(&["--no-daemon"]);
    cmd.env("NOTIFY_SOCKET", &address)
        .env("WATCHDOG_USEC", "100000");
    let mut fg = env.spawn_command(cmd);
    manager.until("READY=1");
    // Pings keep coming while it idles.
    for _ in 0..3 {
        manager.until("WATCHDOG=1");
    }
    fg.wait_started();
    assert_eq!(fg.stop(), code::OK, "{}", fg.stderr());
}
