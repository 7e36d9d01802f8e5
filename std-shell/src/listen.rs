//! Privileged resources: what a daemon opens as root before it drops its privileges, and the
//! sockets systemd hands over (socket activation).
//!
//! # The `acquire` hook
//!
//! A daemon run with `--user` drops root right after daemonizing, so its services'
//! [`activate`](crate::Service::activate) can no longer bind a port below 1024 or open a file
//! only root may read. [`Service::acquire`](crate::Service::acquire) runs before that drop,
//! still as root (in the daemon process, after the chroot if any), with an [`Acquire`] that
//! hands out the sockets of socket activation. What a service opens there it keeps: the shell
//! closes no descriptor a value owns, neither when it daemonizes (it is already daemonized)
//! nor afterwards.
//!
//! # Socket activation
//!
//! systemd (and compatible managers) pass sockets as descriptors 3, 4, … with three variables
//! (`sd_listen_fds(3)`): `LISTEN_FDS`, how many; `LISTEN_PID`, the process they are meant for;
//! `LISTEN_FDNAMES`, their names (`FileDescriptorName=`), separated by `:`. The shell reads
//! them first thing in [`Daemon::run`](crate::Daemon::run), before anything else opens a
//! descriptor, and only if `LISTEN_PID` is this process (the PID changes when the daemon
//! forks, so they are read before and carried over). It then removes the three variables (so
//! no child takes the sockets for its own), sets close-on-exec on the descriptors, and holds
//! them as [`OwnedFd`]s until a service takes one by name with [`Acquire::listener`]. A socket
//! no service took is closed after the `acquire` hooks, with a warning.
//!
//! A name missing from `LISTEN_FDNAMES` is `"unknown"`, as systemd names them.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::libc;

use crate::error::{Error, Result};

/// The first descriptor of socket activation (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// The name of a descriptor that `LISTEN_FDNAMES` does not name.
pub const UNKNOWN_NAME: &str = "unknown";

/// The descriptors handed over by socket activation, by name, until services take them.
#[derive(Debug, Default)]
pub struct Listeners {
    fds: Vec<(String, Option<OwnedFd>)>,
}

impl Listeners {
    /// None at all.
    pub fn none() -> Listeners {
        Listeners::default()
    }

    /// Takes the descriptors that `LISTEN_FDS` and `LISTEN_PID` give this process, and removes
    /// the three variables from the environment (also when they are meant for another
    /// process). Without `LISTEN_FDS`, or for another PID, there are none.
    ///
    /// Call it once, at the start of the program, before anything else could have claimed
    /// descriptor 3 and up, and while no other thread reads the environment.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the variable when a value is not a number, or a descriptor it
    /// announces is not open.
    pub fn from_env() -> Result<Listeners> {
        let fds = std::env::var("LISTEN_FDS").ok();
        let pid = std::env::var("LISTEN_PID").ok();
        let names = std::env::var("LISTEN_FDNAMES").ok();
        for key in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
            std::env::remove_var(key);
        }
        let (Some(fds), Some(pid)) = (fds, pid) else {
            return Ok(Listeners::none());
        };
        let bad = |key: &str, value: &str| {
            Error::config(
                key,
                format!("'{value}' is not a valid value (sd_listen_fds(3))"),
            )
        };
        let pid: u32 = pid.trim().parse().map_err(|_| bad("LISTEN_PID", &pid))?;
        if pid != std::process::id() {
            return Ok(Listeners::none());
        }
        let count: RawFd = fds.trim().parse().map_err(|_| bad("LISTEN_FDS", &fds))?;
        if !(0..=1 << 16).contains(&count) {
            return Err(bad("LISTEN_FDS", &fds));
        }
        let mut names = names.as_deref().unwrap_or("").split(':');
        let mut listeners = Listeners::none();
        for fd in LISTEN_FDS_START..LISTEN_FDS_START + count {
            // SAFETY: F_GETFD and F_SETFD touch only the descriptor's flags.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if flags == -1 {
                return Err(Error::config(
                    "LISTEN_FDS",
                    format!("'{fds}' announces descriptor {fd}, which is not open"),
                ));
            }
            // SAFETY: as above.
            unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
            // SAFETY: the service manager handed this descriptor to this very process
            // (LISTEN_PID), it is open (checked), and it is taken exactly once: the variables
            // are gone, and `Daemon::run` calls this before any other code could claim it.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let name = match names.next() {
                Some(n) if !n.is_empty() => n.to_owned(),
                _ => UNKNOWN_NAME.to_owned(),
            };
            listeners.fds.push((name, Some(owned)));
        }
        Ok(listeners)
    }

    /// The descriptor numbers still held.
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.fds
            .iter()
            .filter_map(|(_, fd)| fd.as_ref().map(AsRawFd::as_raw_fd))
            .collect()
    }

    /// Takes the first descriptor still held under `name`.
    pub fn take(&mut self, name: &str) -> Option<OwnedFd> {
        self.fds
            .iter_mut()
            .find(|(n, fd)| n == name && fd.is_some())
            .and_then(|(_, fd)| fd.take())
    }

    /// The names of the descriptors still held, in descriptor order.
    pub fn names(&self) -> Vec<&str> {
        self.fds
            .iter()
            .filter(|(_, fd)| fd.is_some())
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Closes whatever no service took, and says which.
    pub(crate) fn close_unclaimed(&mut self) {
        for (name, fd) in &mut self.fds {
            if let Some(fd) = fd.take() {
                log::warn!(
                    "socket activation: no component took descriptor {} ('{name}'): closed",
                    fd.as_raw_fd()
                );
            }
        }
    }
}

/// What [`Service::acquire`](crate::Service::acquire) gets: the sockets of socket activation.
/// The process still runs as root when the hook runs (if it was started as root).
#[derive(Debug)]
pub struct Acquire<'a> {
    listeners: &'a mut Listeners,
}

impl<'a> Acquire<'a> {
    /// The context for the hooks, handing out `listeners`.
    pub fn new(listeners: &'a mut Listeners) -> Self {
        Acquire { listeners }
    }

    /// Takes the socket systemd passed under `name` (`FileDescriptorName=`; `"unknown"` when
    /// unnamed). Each socket goes to one taker; `None` when there is none (left).
    pub fn listener(&mut self, name: &str) -> Option<OwnedFd> {
        self.listeners.take(name)
    }

    /// The names of the sockets not taken yet.
    pub fn listener_names(&self) -> Vec<&str> {
        self.listeners.names()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_by_name_once() {
        let (a, b) = nix::unistd::pipe().unwrap();
        let mut l = Listeners {
            fds: vec![("web".into(), Some(a)), ("admin".into(), Some(b))],
        };
        assert_eq!(l.names(), ["web", "admin"]);
        let mut ctx = Acquire::new(&mut l);
        assert!(ctx.listener("admin").is_some());
        assert!(ctx.listener("admin").is_none(), "taken twice");
        assert!(ctx.listener("nope").is_none());
        assert_eq!(ctx.listener_names(), ["web"]);
        assert_eq!(l.raw_fds().len(), 1);
        l.close_unclaimed();
        assert!(l.names().is_empty());
    }
}
