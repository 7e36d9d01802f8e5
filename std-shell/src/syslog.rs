//! The syslog target: RFC 3164 lines to a local syslog socket (`/dev/log`), as glibc's
//! `syslog(3)` sends them, facility `daemon`.
//!
//! A line: `<PRI>Mmm dd HH:MM:SS name[pid]: message`, where `PRI` is `facility * 8 +
//! severity` (`daemon` is 3, so an error is `<27>`) and the time is UTC (RFC 3164 has no zone;
//! journald and rsyslog's local socket input use their own receive time anyway). No host name:
//! the receiver adds it, as it does for glibc.
//!
//! Why by hand and not the `syslog` crate: the whole protocol is the line above, and the
//! socket must never stall the event loop. The socket here is non-blocking: when the syslog
//! daemon falls behind and its queue is full, a line is dropped (and counted in
//! [`Syslog::dropped`]) instead of blocking every handler behind a `log` call. The socket is
//! connected when the target is chosen, before a chroot or a privilege drop, and kept across
//! daemonizing ([`Syslog::fd`]); if the syslog daemon restarts (the connection is refused),
//! the next line reconnects by path once.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::civil::Utc;
use crate::error::{Error, Result};

/// The `daemon` facility (RFC 3164 / 5424 code 3).
const FACILITY_DAEMON: u8 = 3;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A connection to a local syslog socket.
#[derive(Debug)]
pub struct Syslog {
    path: PathBuf,
    socket: UnixDatagram,
    dropped: AtomicU64,
}

impl Syslog {
    /// Connects to the datagram socket at `path` (`/dev/log` usually).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the path when the socket cannot be reached.
    pub fn connect(path: &Path) -> Result<Syslog> {
        let socket =
            connect(path).map_err(|e| Error::io("connect to the syslog socket", path, e))?;
        Ok(Syslog {
            path: path.to_path_buf(),
            socket,
            dropped: AtomicU64::new(0),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The socket's descriptor, to keep across daemonizing.
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Lines dropped because the socket's queue was full or the receiver was gone.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Sends one line at `severity` (0 emerg … 7 debug) for daemon `name`.
    pub fn send(&mut self, severity: u8, name: &str, message: &str) {
        let line = format_line(
            SystemTime::now(),
            severity,
            name,
            std::process::id(),
            message,
        );
        let sent = match self.socket.send(line.as_bytes()) {
            Err(e) if reconnectable(&e) => match connect(&self.path) {
                Ok(socket) => {
                    self.socket = socket;
                    self.socket.send(line.as_bytes())
                }
                Err(e) => Err(e),
            },
            other => other,
        };
        if sent.is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn connect(path: &Path) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// The receiver went away (a restarted syslog daemon has a new socket at the same path).
fn reconnectable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ECONNREFUSED | nix::libc::ENOTCONN | nix::libc::ECONNRESET)
    )
}

/// One RFC 3164 line (see the module documentation).
pub(crate) fn format_line(
    t: SystemTime,
    severity: u8,
    name: &str,
    pid: u32,
    message: &str,
) -> String {
    let u = Utc::from_system_time(t);
    let pri = FACILITY_DAEMON * 8 + severity.min(7);
    format!(
        "<{pri}>{} {:>2} {:02}:{:02}:{:02} {name}[{pid}]: {message}",
        MONTHS[(u.month as usize).saturating_sub(1).min(11)],
        u.day,
        u.hour,
        u.minute,
        u.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn lines_follow_rfc_3164() {
        // 2026-11-03 02:16:05 UTC
        let t = UNIX_EPOCH + Duration::from_secs(1_793_672_165);
        assert_eq!(
            format_line(t, 3, "demo", 42, "disk full"),
            "<27>Nov  3 02:16:05 demo[42]: disk full"
        );
        assert_eq!(
            format_line(t, 9, "d", 1, "x"),
            "<31>Nov  3 02:16:05 d[1]: x"
        );
    }

    #[test]
    fn lines_reach_a_datagram_socket_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let listener = UnixDatagram::bind(&path).unwrap();
        let mut syslog = Syslog::connect(&path).unwrap();
        assert_eq!(syslog.path(), path);
        syslog.send(6, "d", "hello");
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(line.starts_with("<30>"), "{line}");
        assert!(
            line.ends_with(&format!(" d[{}]: hello", std::process::id())),
            "{line}"
        );

        // The syslog daemon restarts: a new socket at the same path.
        drop(listener);
        std::fs::remove_file(&path).unwrap();
        let listener = UnixDatagram::bind(&path).unwrap();
        syslog.send(4, "d", "again");
        let n = listener.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().ends_with(": again"));
        assert_eq!(syslog.dropped(), 0);
    }

    #[test]
    fn a_full_queue_drops_lines_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let _listener = UnixDatagram::bind(&path).unwrap();
        let mut syslog = Syslog::connect(&path).unwrap();
        // Nobody reads: the receiver's queue fills up, and sending must not block.
        for _ in 0..10_000 {
            syslog.send(6, "d", "filler filler filler filler filler filler");
        }
        assert!(syslog.dropped() > 0);
    }

    #[test]
    fn a_missing_socket_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = Syslog::connect(&dir.path().join("nolog")).unwrap_err();
        assert!(err.to_string().contains("nolog"), "{err}");
    }
}
