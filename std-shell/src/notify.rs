//! systemd's notify protocol (`sd_notify(3)`), for `Type=notify` units.
//!
//! systemd passes a datagram socket in `NOTIFY_SOCKET`: a file-system path, or an abstract
//! socket name written with a leading `@`. Each message is one datagram of `KEY=VALUE` lines.
//! [`Notifier`] sends them through an unbound, close-on-exec `UnixDatagram`; std's socket is
//! enough here, so the `sd-notify` crate is not needed.
//!
//! The service manager's watchdog (`WatchdogSec=`) is told apart from the shell's stop
//! watchdog ([`crate::watchdog`]): [`watchdog_interval`] says how often systemd expects
//! [`Notifier::watchdog`]; sending at half that interval is the usual choice.

use std::ffi::{OsStr, OsString};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

use crate::error::{Error, Result};

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// The address as given (`/run/...` or `@name`), for error messages.
    name: PathBuf,
}

impl Notifier {
    /// The notifier for `NOTIFY_SOCKET`, or `None` when the variable is unset or empty (not
    /// started by systemd as `Type=notify`). The variable is left in the environment.
    ///
    /// # Errors
    ///
    /// As [`Notifier::new`].
    pub fn from_env() -> Result<Option<Notifier>> {
        from_value(std::env::var_os("NOTIFY_SOCKET"))
    }

    /// A notifier for `address`: an absolute path, or `@name` for an abstract socket.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for another kind of address (relative, `vsock:`…), [`Error::Os`]
    /// when the socket cannot be created.
    pub fn new(address: &OsStr) -> Result<Notifier> {
        let bytes = address.as_bytes();
        let addr = if let Some(name) = bytes.strip_prefix(b"@") {
            SocketAddr::from_abstract_name(name)
        } else if bytes.starts_with(b"/") {
            SocketAddr::from_pathname(address)
        } else {
            return Err(Error::config(
                "NOTIFY_SOCKET",
                format!(
                    "'{}' is neither an absolute path nor an abstract socket name ('@...')",
                    address.to_string_lossy()
                ),
            ));
        }
        .map_err(|e| {
            Error::config(
                "NOTIFY_SOCKET",
                format!("bad socket address '{}': {e}", address.to_string_lossy()),
            )
        })?;
        let socket =
            UnixDatagram::unbound().map_err(|e| Error::os("create the notify socket", e))?;
        Ok(Notifier {
            socket,
            addr,
            name: PathBuf::from(address),
        })
    }

    /// The socket's address as given.
    pub fn address(&self) -> &Path {
        &self.name
    }

    /// Sends `msg` (newline-separated `KEY=VALUE` assignments) as one datagram.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the socket when the send fails (no listener, permission).
    pub fn send(&self, msg: &str) -> Result<()> {
        let sent = self
            .socket
            .send_to_addr(msg.as_bytes(), &self.addr)
            .map_err(|e| Error::io("notify the service manager at", &self.name, e))?;
        if sent != msg.len() {
            let e = std::io::Error::new(std::io::ErrorKind::WriteZero, "short datagram");
            return Err(Error::io("notify the service manager at", &self.name, e));
        }
        Ok(())
    }

    /// `READY=1`: start-up (or a reload) is complete.
    ///
    /// # Errors
    ///
    /// As [`Notifier::send`].
    pub fn ready(&self) -> Result<()> {
        self.send("READY=1")
    }

    /// `RELOADING=1` with `MONOTONIC_USEC`, as `Type=notify-reload` requires; send
    /// [`Notifier::ready`] when the reload is done.
    ///
    /// # Errors
    ///
    /// As [`Notifier::send`], or [`Error::Os`] if the monotonic clock cannot be read.
    pub fn reloading(&self) -> Result<()> {
        let now = clock_gettime(ClockId::CLOCK_MONOTONIC)
            .map_err(|e| Error::os("read the monotonic clock", e.into()))?;
        let usec = now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1_000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"))
    }

    /// `STOPPING=1`: the daemon begins to stop.
    ///
    /// # Errors
    ///
    /// As [`Notifier::send`].
    pub fn stopping(&self) -> Result<()> {
        self.send("STOPPING=1")
    }

    /// `STATUS=<status>`: a one-line status that `systemctl status` shows. Line breaks in
    /// `status` become spaces (a newline would start another assignment).
    ///
    /// # Errors
    ///
    /// As [`Notifier::send`].
    pub fn status(&self, status: &str) -> Result<()> {
        let line: String = status
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        self.send(&format!("STATUS={line}"))
    }

    /// `WATCHDOG=1`: the keep-alive ping for `WatchdogSec=`.
    ///
    /// # Errors
    ///
    /// As [`Notifier::send`].
    pub fn watchdog(&self) -> Result<()> {
        self.send("WATCHDOG=1")
    }
}

fn from_value(value: Option<OsString>) -> Result<Option<Notifier>> {
    match value {
        Some(v) if !v.is_empty() => Notifier::new(&v).map(Some),
        _ => Ok(None),
    }
}

/// How often systemd expects [`Notifier::watchdog`]: `WATCHDOG_USEC`, if it is set, positive,
/// and meant for this process (`WATCHDOG_PID` unset or equal to our PID).
pub fn watchdog_interval() -> Option<Duration> {
    interval_from(
        std::env::var_os("WATCHDOG_USEC").as_deref(),
        std::env::var_os("WATCHDOG_PID").as_deref(),
        std::process::id(),
    )
}

fn interval_from(usec: Option<&OsStr>, pid: Option<&OsStr>, my_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.to_str()?.trim().parse::<u32>().ok()? != my_pid {
            return None;
        }
    }
    let usec: u64 = usec?.to_str()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn monotonic_usec() -> u64 {
        let t = clock_gettime(ClockId::CLOCK_MONOTONIC).unwrap();
        t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000
    }

    #[test]
    fn messages_arrive_on_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(path.as_os_str()).unwrap();
        assert_eq!(notifier.address(), path);

        notifier.ready().unwrap();
        assert_eq!(recv(&listener), "READY=1");
        notifier.stopping().unwrap();
        assert_eq!(recv(&listener), "STOPPING=1");
        notifier.watchdog().unwrap();
        assert_eq!(recv(&listener), "WATCHDOG=1");
        notifier.status("processing\n3 files").unwrap();
        assert_eq!(recv(&listener), "STATUS=processing 3 files");

        let before = monotonic_usec();
        notifier.reloading().unwrap();
        let after = monotonic_usec();
        let msg = recv(&listener);
        let usec: u64 = msg
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{msg:?}"))
            .parse()
            .unwrap();
        assert!(before <= usec && usec <= after, "{before} {usec} {after}");
    }

    #[test]
    fn messages_arrive_on_an_abstract_socket() {
        let name = format!("zendaemon-test-{}-notify", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let notifier = from_value(Some(format!("@{name}").into()))
            .unwrap()
            .unwrap();
        notifier.send("READY=1\nSTATUS=up").unwrap();
        assert_eq!(recv(&listener), "READY=1\nSTATUS=up");
    }

    #[test]
    fn unset_or_empty_means_no_notifier() {
        assert!(from_value(None).unwrap().is_none());
        assert!(from_value(Some(OsString::new())).unwrap().is_none());
    }

    #[test]
    fn bad_addresses_are_clear_errors() {
        let err = Notifier::new(OsStr::new("run/notify")).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::CONFIG);
        assert!(err.to_string().contains("'run/notify'"), "{err}");
        assert!(Notifier::new(OsStr::new("vsock:2:1234")).is_err());
    }

    #[test]
    fn sending_without_a_listener_names_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.sock");
        let notifier = Notifier::new(path.as_os_str()).unwrap();
        let err = notifier.ready().unwrap_err();
        assert!(err.to_string().contains("gone.sock"), "{err}");
    }

    #[test]
    fn watchdog_interval_rules() {
        let s = |v: &'static str| Some(OsStr::new(v));
        assert_eq!(
            interval_from(s("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            interval_from(s("500"), s("7"), 7),
            Some(Duration::from_micros(500))
        );
        assert_eq!(interval_from(s("500"), s("8"), 7), None); // meant for another process
        assert_eq!(interval_from(s("500"), s("x"), 7), None);
        assert_eq!(interval_from(s("0"), None, 7), None);
        assert_eq!(interval_from(s("abc"), None, 7), None);
        assert_eq!(interval_from(None, s("7"), 7), None);
    }
}
