//! Daemonization the way systemd's `daemon(7)` describes it, and the foreground variant.
//!
//! [`daemonize`] turns the calling process into a background daemon and keeps the launching
//! process waiting on a *readiness pipe* until the daemon says how its start went: the
//! launcher exits 0 only after [`Readiness::ready`], and otherwise prints the daemon's own
//! error and exits non-zero (pyzenkit's launcher exited 0 as soon as it had forked, whatever
//! happened next). Open and check everything that can fail (configuration, log file,
//! [pidfile](crate::pidfile)) *before* calling it, while errors still reach the terminal.
//!
//! # Steps
//!
//! In the launcher: plan the steps (the account lookups, which NSS modules may serve with
//! threads of their own); create the readiness pipe (close-on-exec); right before the fork,
//! refuse when more than one thread runs (`fork` copies only the calling thread, so locks held
//! by the others would stay locked for ever in the child); become a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`), so the daemon, orphaned by the intermediate process, becomes
//! the launcher's child; fork; wait.
//!
//! In the first child: `setsid`; fork again, send the daemon's PID over the pipe and let this
//! intermediate process exit, so the daemon is not a session leader and can never acquire a
//! controlling terminal.
//!
//! # The launcher's wait
//!
//! The launcher waits for the first of: the daemon's report on the pipe, the daemon's death,
//! the end of the pipe, and the start timeout ([`DaemonOptions::start_timeout`]). The end of
//! the pipe alone is not enough: a child that a service forks (without exec) inherits the
//! pipe's write end and may outlive the daemon, and the launcher must not wait for it. So the
//! launcher polls the pipe in short slices and reaps the daemon with `waitpid(WNOHANG)`
//! between them: as its subreaper, the daemon's PID cannot be reused before the launcher has
//! waited for it. On a death it prints the daemon's exit code or signal; on the timeout, what
//! it waited for and that the daemon may still be starting.
//!
//! In the daemon: every signal disposition back to its default and an empty signal mask
//! (`SIGPIPE` stays ignored, as the Rust runtime sets it); stdin, stdout and stderr on
//! `/dev/null` (below); the umask; the optional chroot (then `chdir("/")`); `chdir` to the
//! working directory (inside the chroot, if any, and `/` by default); the optional privilege
//! drop: `setgroups`, `setgid`, `setuid`, in that order, then a check that root cannot be
//! regained and, for a user other than root, that no capability is left. A failing step sends
//! its error over the pipe and ends the daemon. [`Daemon`](crate::Daemon) leaves `user` and
//! `group` out and drops privileges itself later, with [`Privileges`], once the services'
//! `acquire` hooks have opened what needs root.
//!
//! Descriptors: only 0, 1 and 2 change (onto `/dev/null`). Every other descriptor is owned by
//! some value of the program (a `File`, an `OwnedFd` from `nix::fcntl::open` or `dup`, a
//! socket, the pidfile, the readiness pipe), with or without close-on-exec, so `daemonize`
//! neither closes nor redirects it: the value keeps a working descriptor, and closing it stays
//! that value's job. What the process inherited from whoever started it is closed earlier, at
//! the start of [`Daemon::run`](crate::Daemon::run), before any code of the program's
//! components runs (`close_inherited`).
//!
//! # Limitations
//!
//! Linux: the thread count comes from `/proc/self/status`. Supplementary groups become just
//! the target group (`initgroups` would need the account database, which a chroot may lack).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{self, fork, ForkResult, Gid, Group, Pid, Uid, User};

use crate::error::{exit, Error, Result};

/// What [`daemonize`] and [`foreground`] change in the process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonOptions {
    /// Change the root directory to this one (needs root). Relative paths resolve against the
    /// current directory. [`DaemonOptions::work_dir`] is then taken inside the new root.
    pub chroot_dir: Option<PathBuf>,
    /// The working directory. `None`: `/` for a daemon (so it never keeps a file system
    /// busy), unchanged in the foreground.
    pub work_dir: Option<PathBuf>,
    /// The file mode creation mask (at most `0o777`); `None` keeps the inherited one.
    pub umask: Option<u32>,
    /// Switch to this user ID, for example from [`resolve_user`].
    pub user: Option<u32>,
    /// Switch to this group ID, which also becomes the only supplementary group. With a
    /// `user` and no `group`, the user's primary group from the account database.
    pub group: Option<u32>,
    /// Descriptors that the daemon keeps besides 0, 1 and 2: the pidfile's, the log file's.
    /// Informative only: [`daemonize`] leaves every descriptor above 2 as it is (a descriptor
    /// belongs to whatever value holds it, see "Descriptors" in the module documentation).
    pub keep_fds: Vec<RawFd>,
    /// How long the launcher waits for the daemon's report before it gives up (exit 1,
    /// naming what it waited for); `None` waits for ever. Not used in the foreground.
    pub start_timeout: Option<Duration>,
}

/// The daemon's end of the readiness pipe. Report exactly once: [`Readiness::ready`] once the
/// daemon runs, or [`Readiness::fail`] with the reason it cannot. Dropping it unreported
/// makes the launcher exit 1 with "daemon exited before it was ready".
#[derive(Debug)]
pub struct Readiness {
    pipe: Option<OwnedFd>,
}

/// First byte on the pipe from the intermediate process: the daemon's PID (4 bytes) follows.
const PID: u8 = b'P';
/// First byte on the pipe: the daemon is ready.
const READY: u8 = b'R';
/// First byte on the pipe: the daemon failed; an exit code and a message follow.
const FAILED: u8 = b'F';
/// Longest failure message the launcher reads.
const MAX_MESSAGE: usize = 64 * 1024;

impl Readiness {
    /// A handle with nobody to report to, for a foreground run: both reports do nothing.
    pub fn detached() -> Readiness {
        Readiness { pipe: None }
    }

    /// Tells the launcher that the daemon is ready; it exits 0.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] when the launcher is gone (killed) or the write fails.
    pub fn ready(mut self) -> Result<()> {
        self.send(&[READY])
    }

    /// Tells the launcher that the daemon cannot run, and why; it prints
    /// `daemon failed to start: <message>` and exits 1. The daemon should exit next.
    ///
    /// # Errors
    ///
    /// As [`Readiness::ready`].
    pub fn fail(self, message: &str) -> Result<()> {
        self.fail_with_code(exit::FAILURE, message)
    }

    /// Like [`Readiness::fail`], with the launcher's exit code (an [`Error::exit_code`], so a
    /// configuration error ends the launcher with the same code in daemon mode as in the
    /// foreground). Codes outside 1..=255 become 1.
    ///
    /// # Errors
    ///
    /// As [`Readiness::ready`].
    pub fn fail_with_code(mut self, code: i32, message: &str) -> Result<()> {
        let message = &message.as_bytes()[..message.len().min(MAX_MESSAGE)];
        let mut frame = Vec::with_capacity(9 + message.len());
        frame.push(FAILED);
        frame.extend_from_slice(&code.to_be_bytes());
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(message);
        self.send(&frame)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        match self.pipe.take() {
            None => Ok(()),
            Some(fd) => File::from(fd)
                .write_all(bytes)
                .map_err(|e| Error::os("report to the launching process", e)),
        }
    }
}

/// Daemonizes the process (see the [module documentation](self) for the steps).
///
/// Returns only in the daemon, with the handle to report readiness through. The launching
/// process never returns: it exits with the daemon's report.
///
/// # Errors
///
/// In the launcher, before anything forked: [`Error::Daemon`] when more than one thread runs,
/// [`Error::UnknownAccount`] when a user has no primary group to switch to, [`Error::Os`]
/// when the pipe or the fork fails, [`Error::Config`] for a umask above `0o777`. Errors in
/// the daemon's own steps do not return: they end the daemon and reach the launcher.
pub fn daemonize(opts: &DaemonOptions) -> Result<Readiness> {
    let plan = Plan::new(opts, Some(Path::new("/")))?;
    // Anything buffered would otherwise be written twice, by the launcher and the daemon.
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    let (read, write) = unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Error::os("create the readiness pipe", e.into()))?;
    // Right before the fork, after everything that might start a thread (the account
    // lookups of `Plan::new` go through NSS modules, which may).
    let threads = thread_count()?;
    if threads > 1 {
        return Err(Error::Daemon(format!(
            "cannot daemonize while {threads} threads run (fork copies only the calling \
             thread); daemonize before starting any thread"
        )));
    }
    // The daemon becomes our child when the intermediate process exits, so we can reap it.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes integers only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == -1 {
        return Err(Error::os(
            "become the daemon's subreaper",
            io::Error::last_os_error(),
        ));
    }

    // SAFETY: this process has exactly one thread (checked above), so the child starts in a
    // consistent state and may allocate, take locks and run any code.
    match unsafe { fork() }.map_err(|e| Error::os("fork", e.into()))? {
        ForkResult::Parent { child } => {
            drop(write);
            launcher(read, child, opts.start_timeout)
        }
        ForkResult::Child => {
            drop(read);
            match first_child(&plan, &write) {
                Ok(()) => Ok(Readiness { pipe: Some(write) }),
                Err(e) => die(write, &e),
            }
        }
    }
}

/// The foreground variant: the signal reset, umask, chroot, working directory and privilege
/// drop of [`daemonize`], in the same order, without forking. Every signal disposition goes
/// back to its default and the signal mask is emptied here too: a supervisor that started us
/// with `SIGINT` and `SIGTERM` blocked or ignored must not leave the daemon deaf to them.
///
/// # Errors
///
/// [`Error::Io`] naming the directory that cannot be entered, [`Error::Os`] when the
/// privilege drop fails (a permission error when not root), [`Error::Daemon`] if root could
/// be regained, and the planning errors of [`daemonize`].
pub fn foreground(opts: &DaemonOptions) -> Result<()> {
    let plan = Plan::new(opts, None)?;
    reset_signals()?;
    plan.apply()
}

/// Resolves a user name, or a number, to a user ID. A name that the account database knows
/// wins over reading it as a number. Root only when asked for explicitly: `root` or `0`; any
/// other name of user ID 0 (a `toor` alias, a tampered account database) is refused, since
/// `--user` is there to give privileges up.
///
/// # Errors
///
/// [`Error::UnknownAccount`] when neither works, [`Error::Os`] when the lookup itself fails,
/// [`Error::Config`] for another name of user ID 0.
pub fn resolve_user(spec: &str) -> Result<u32> {
    let spec = spec.trim();
    if !spec.is_empty() {
        let found = User::from_name(spec).map_err(|e| Error::os("look up a user", e.into()))?;
        if let Some(user) = found {
            return root_only_when_explicit(spec, user.uid).map(|()| user.uid.as_raw());
        }
        if let Ok(uid) = spec.parse::<u32>() {
            return Ok(uid);
        }
    }
    Err(Error::UnknownAccount {
        kind: "user",
        name: spec.to_string(),
    })
}

/// Refuses a name other than `root` that the account database maps to user ID 0.
fn root_only_when_explicit(name: &str, uid: Uid) -> Result<()> {
    if uid.is_root() && name != "root" {
        return Err(Error::config(
            "user",
            format!(
                "'{name}' is user ID 0 (root) under another name; write 'root' or '0' to run \
                 as root"
            ),
        ));
    }
    Ok(())
}

/// Resolves a group name, or a number, to a group ID, as [`resolve_user`] does for users.
///
/// # Errors
///
/// [`Error::UnknownAccount`] when neither works, [`Error::Os`] when the lookup itself fails.
pub fn resolve_group(spec: &str) -> Result<u32> {
    let spec = spec.trim();
    if !spec.is_empty() {
        let found = Group::from_name(spec).map_err(|e| Error::os("look up a group", e.into()))?;
        if let Some(group) = found {
            return Ok(group.gid.as_raw());
        }
        if let Ok(gid) = spec.parse::<u32>() {
            return Ok(gid);
        }
    }
    Err(Error::UnknownAccount {
        kind: "group",
        name: spec.to_string(),
    })
}

/// The options checked and completed before forking (the account database may not exist
/// inside the chroot).
#[derive(Debug)]
struct Plan {
    chroot_dir: Option<PathBuf>,
    work_dir: Option<PathBuf>,
    umask: Option<Mode>,
    user: Option<Uid>,
    group: Option<Gid>,
}

impl Plan {
    fn new(opts: &DaemonOptions, default_work_dir: Option<&Path>) -> Result<Plan> {
        let umask = match opts.umask {
            None => None,
            Some(mask) if mask <= 0o777 => Some(Mode::from_bits_truncate(mask as libc::mode_t)),
            Some(mask) => {
                return Err(Error::config(
                    "umask",
                    format!("{mask:#o} is not a file mode mask (at most 0o777)"),
                ))
            }
        };
        let user = opts.user.map(Uid::from_raw);
        let group = match (opts.group, user) {
            (Some(gid), _) => Some(Gid::from_raw(gid)),
            (None, Some(uid)) => {
                let entry =
                    User::from_uid(uid).map_err(|e| Error::os("look up a user", e.into()))?;
                match entry {
                    Some(entry) => Some(entry.gid),
                    None => {
                        return Err(Error::UnknownAccount {
                            kind: "user",
                            name: format!("{uid} (no primary group to switch to; set a group)"),
                        })
                    }
                }
            }
            (None, None) => None,
        };
        Ok(Plan {
            chroot_dir: opts.chroot_dir.clone(),
            work_dir: opts
                .work_dir
                .clone()
                .or_else(|| default_work_dir.map(Path::to_path_buf)),
            umask,
            user,
            group,
        })
    }

    /// The steps shared with the foreground: umask, chroot, working directory, privileges.
    fn apply(&self) -> Result<()> {
        if let Some(mask) = self.umask {
            umask(mask);
        }
        if let Some(dir) = &self.chroot_dir {
            unistd::chroot(dir)
                .map_err(|e| Error::io("change the root directory to", dir, e.into()))?;
            unistd::chdir("/").map_err(|e| Error::io("change directory to", "/", e.into()))?;
        }
        if let Some(dir) = &self.work_dir {
            unistd::chdir(dir).map_err(|e| Error::io("change directory to", dir, e.into()))?;
        }
        Privileges {
            user: self.user,
            group: self.group,
        }
        .apply()
    }
}

/// A privilege drop decided before forking (the account database may be missing inside the
/// chroot) and done later, when the daemon has opened what needs root: the
/// [`Service::acquire`](crate::Service::acquire) hooks run in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privileges {
    user: Option<Uid>,
    group: Option<Gid>,
}

impl Privileges {
    /// The drop that `opts.user` and `opts.group` ask for; with a user and no group, the
    /// user's primary group from the account database.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownAccount`] when a user has no primary group to switch to, and
    /// [`Error::Config`] for user 0 with another group: root keeps every privilege whatever
    /// its group, so that would look like a drop and be none.
    pub fn plan(opts: &DaemonOptions) -> Result<Privileges> {
        let plan = Plan::new(
            &DaemonOptions {
                user: opts.user,
                group: opts.group,
                ..DaemonOptions::default()
            },
            None,
        )?;
        if let (Some(uid), Some(gid)) = (plan.user, opts.group.map(Gid::from_raw)) {
            if uid.is_root() && gid.as_raw() != 0 {
                return Err(Error::config(
                    "group",
                    format!(
                        "group {gid} with user 0 (root) would leave every privilege of root; \
                         run as another user, or leave out the group"
                    ),
                ));
            }
        }
        Ok(Privileges {
            user: plan.user,
            group: plan.group,
        })
    }

    /// No change of user or group.
    pub fn none() -> Privileges {
        Privileges {
            user: None,
            group: None,
        }
    }

    /// Drops them: the group (and the supplementary groups), then the user; then checks that
    /// root cannot be regained and, for a user other than root, that no capability is left
    /// (`capget(2)`: Linux clears them at `setuid` unless `PR_SET_KEEPCAPS` or ambient
    /// capabilities keep some).
    ///
    /// # Errors
    ///
    /// [`Error::Os`] when a step fails (a permission error when not root), [`Error::Daemon`]
    /// when root or a capability remains.
    pub fn apply(&self) -> Result<()> {
        drop_privileges(self.user, self.group)?;
        match self.user {
            Some(uid) if !uid.is_root() => no_capabilities_left(uid),
            _ => Ok(()),
        }
    }
}

/// Checks with `capget(2)` (which needs no `/proc`, so it works inside a chroot) that the
/// effective and permitted capability sets are empty once the process runs as the non-root
/// user `uid`.
fn no_capabilities_left(uid: Uid) -> Result<()> {
    /// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
    const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget reads the header and writes two `Data` structs (version 3's layout,
    // `repr(C)` here), both live for the call; pid 0 is this thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(Error::os(
            "read the capability sets",
            io::Error::last_os_error(),
        ));
    }
    let effective = u64::from(data[0].effective) | (u64::from(data[1].effective) << 32);
    let permitted = u64::from(data[0].permitted) | (u64::from(data[1].permitted) << 32);
    if effective != 0 || permitted != 0 {
        return Err(Error::Daemon(format!(
            "capabilities remain after switching to user {uid}: effective {effective:#x}, \
             permitted {permitted:#x}"
        )));
    }
    Ok(())
}

/// Sets the group (and the supplementary groups, when allowed), then the user, then checks
/// that root cannot be regained.
fn drop_privileges(user: Option<Uid>, group: Option<Gid>) -> Result<()> {
    let failed = |what: String, e: Errno| {
        let e = io::Error::from(e);
        Error::os(
            "drop privileges",
            io::Error::new(e.kind(), format!("{what}: {e}")),
        )
    };
    if let Some(gid) = group {
        if unistd::geteuid().is_root() {
            unistd::setgroups(&[gid])
                .map_err(|e| failed(format!("cannot set the supplementary groups to {gid}"), e))?;
        }
        unistd::setgid(gid).map_err(|e| failed(format!("cannot switch to group {gid}"), e))?;
    }
    if let Some(uid) = user {
        unistd::setuid(uid).map_err(|e| failed(format!("cannot switch to user {uid}"), e))?;
        if !uid.is_root() && unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(Error::Daemon(format!(
                "root could be regained after switching to user {uid}"
            )));
        }
    }
    if let Some(gid) = group {
        let root_user = user.is_none_or(|u| u.is_root());
        if gid.as_raw() != 0 && !root_user && unistd::setgid(Gid::from_raw(0)).is_ok() {
            return Err(Error::Daemon(format!(
                "group 0 could be regained after switching to group {gid}"
            )));
        }
    }
    Ok(())
}

/// The number of threads in this process.
fn thread_count() -> Result<usize> {
    let path = "/proc/self/status";
    let status = fs::read_to_string(path).map_err(|e| Error::io("count threads in", path, e))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| {
            let e = io::Error::new(io::ErrorKind::InvalidData, "no 'Threads:' line");
            Error::io("count threads in", path, e)
        })
}

/// The launching process: waits for the daemon's report, its death or the timeout (see the
/// [module documentation](self)), and exits accordingly.
fn launcher(read: OwnedFd, child: Pid, timeout: Option<Duration>) -> ! {
    let program = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(OsStr::to_os_string))
        .unwrap_or_else(|| OsString::from("daemon"));
    let program = program.to_string_lossy();
    let outcome = wait_for_daemon(read, child, timeout);
    let fail = |message: String| -> ! {
        eprintln!("{program}: {}", Error::Daemon(message));
        std::process::exit(exit::FAILURE)
    };
    match outcome {
        Outcome::Report(Report::Ready) => std::process::exit(exit::OK),
        Outcome::Report(Report::Failed { code, message }) => {
            eprintln!("{program}: {}", Error::Daemon(message));
            std::process::exit(if (1..=255).contains(&code) {
                code
            } else {
                exit::FAILURE
            })
        }
        Outcome::Report(Report::Gone) => {
            eprintln!("{program}: daemon exited before it was ready");
            std::process::exit(exit::FAILURE)
        }
        Outcome::Died { pid, how } => {
            eprintln!(
                "{program}: daemon exited before it was ready (pid {pid} {how}; a process it \
                 forked still holds the readiness pipe)"
            );
            std::process::exit(exit::FAILURE)
        }
        Outcome::TimedOut { pid, after } => {
            let who = pid.map_or_else(
                || "the daemon".to_owned(),
                |p| format!("the daemon (pid {p})"),
            );
            fail(format!(
                "waited {} s (start_timeout) for {who} to report that it is ready, in vain; it may \
                 still be starting",
                after.as_secs_f64()
            ))
        }
    }
}

/// How the launcher's wait ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The daemon reported (or the pipe ended without a report).
    Report(Report),
    /// The daemon died without a report; `how` says how ("exited with code 3").
    Died { pid: i32, how: String },
    /// No report within the timeout.
    TimedOut { pid: Option<i32>, after: Duration },
}

/// The longest the launcher sleeps in `poll` before it looks whether the daemon died.
const SLICE: Duration = Duration::from_millis(50);

fn wait_for_daemon(read: OwnedFd, child: Pid, timeout: Option<Duration>) -> Outcome {
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let mut frames = Frames::default();
    let mut pipe = File::from(read);
    // The intermediate process exits right after its fork: reap it.
    let _ = waitpid(child, None);
    loop {
        let mut chunk = [0u8; 4096];
        let slice = match timeout {
            Some(t) => match t.checked_sub(started.elapsed()) {
                Some(left) => left.min(SLICE),
                None => {
                    return Outcome::TimedOut {
                        pid: frames.daemon,
                        after: t,
                    }
                }
            },
            None => SLICE,
        };
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        let ready = match poll(
            &mut fds,
            PollTimeout::try_from(slice).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(n) => n > 0,
            Err(Errno::EINTR) => false,
            Err(_) => true,
        };
        if ready {
            match pipe.read(&mut chunk) {
                Ok(0) => return Outcome::Report(frames.finish(&buf)),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    frames.parse(&mut buf);
                    if let Some(report) = frames.report.take() {
                        return Outcome::Report(report);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Outcome::Report(frames.finish(&buf)),
            }
            continue;
        }
        if let Some(pid) = frames.daemon {
            let how = match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => format!("exited with code {code}"),
                Ok(WaitStatus::Signaled(_, sig, _)) => format!("was killed by {sig}"),
                _ => continue,
            };
            // It may have written its report just before it died.
            let _ = fcntl(&pipe, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            frames.parse(&mut buf);
            return match frames.report.take() {
                Some(report) => Outcome::Report(report),
                None => Outcome::Died { pid, how },
            };
        }
    }
}

/// What the launcher read from the pipe.
#[derive(Debug, PartialEq, Eq)]
enum Report {
    Ready,
    Failed { code: i32, message: String },
    Gone,
}

/// The frames read so far: the daemon's PID (from the intermediate process) and the report.
#[derive(Debug, Default)]
struct Frames {
    daemon: Option<i32>,
    report: Option<Report>,
}

impl Frames {
    /// Consumes the complete frames at the start of `buf`.
    fn parse(&mut self, buf: &mut Vec<u8>) {
        while self.report.is_none() {
            match buf.first().copied() {
                None => return,
                Some(PID) => {
                    let Some(bytes) = buf.get(1..5) else { return };
                    self.daemon = Some(i32::from_be_bytes(bytes.try_into().expect("4 bytes")));
                    buf.drain(..5);
                }
                Some(READY) => {
                    self.report = Some(Report::Ready);
                    buf.drain(..1);
                }
                Some(FAILED) => {
                    let Some(header) = buf.get(1..9) else { return };
                    let code = i32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
                    let len = u32::from_be_bytes(header[4..].try_into().expect("4 bytes")) as usize;
                    let len = len.min(MAX_MESSAGE);
                    let Some(message) = buf.get(9..9 + len) else {
                        return;
                    };
                    self.report = Some(Report::Failed {
                        code,
                        message: String::from_utf8_lossy(message).into_owned(),
                    });
                    buf.drain(..9 + len);
                }
                Some(other) => {
                    self.report = Some(Report::Failed {
                        code: exit::FAILURE,
                        message: format!("unexpected byte {other:#04x} on the readiness pipe"),
                    });
                    buf.clear();
                }
            }
        }
    }

    /// The report once the pipe has ended with `rest` unparsed: a failure message cut short
    /// still counts; anything less is "gone".
    fn finish(&mut self, rest: &[u8]) -> Report {
        if let Some(report) = self.report.take() {
            return report;
        }
        match rest {
            [FAILED, header @ ..] if header.len() >= 8 => Report::Failed {
                code: i32::from_be_bytes(header[..4].try_into().expect("4 bytes")),
                message: String::from_utf8_lossy(&header[8..]).into_owned(),
            },
            _ => Report::Gone,
        }
    }
}

/// Reads frames from `pipe` until a report or its end (for tests and simple callers).
#[cfg(test)]
fn read_report(mut pipe: impl Read) -> Report {
    let mut frames = Frames::default();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) | Err(_) => return frames.finish(&buf),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                frames.parse(&mut buf);
                if let Some(report) = frames.report.take() {
                    return report;
                }
            }
        }
    }
}

/// The first child: new session, second fork, then the daemon's own steps.
fn first_child(plan: &Plan, pipe: &OwnedFd) -> Result<()> {
    unistd::setsid().map_err(|e| Error::os("setsid", e.into()))?;
    // SAFETY: still a single-threaded process (a fork of one).
    match unsafe { fork() }.map_err(|e| Error::os("fork", e.into()))? {
        ForkResult::Parent { child } => {
            // The launcher needs the daemon's PID to notice its death (see the module docs).
            let mut frame = [PID, 0, 0, 0, 0];
            frame[1..].copy_from_slice(&child.as_raw().to_be_bytes());
            // SAFETY: a write of a live buffer to the pipe, then the intermediate process ends
            // at once, running no exit handlers and no destructors (the daemon owns the
            // shared resources now).
            unsafe {
                libc::write(pipe.as_raw_fd(), frame.as_ptr().cast(), frame.len());
                libc::_exit(0)
            }
        }
        ForkResult::Child => {}
    }
    reset_signals()?;
    redirect_stdio()?;
    plan.apply()
}

/// Every disposition to its default, `SIGPIPE` ignored (the Rust runtime's choice, so a
/// write to a closed pipe or socket is an error rather than death), an empty mask.
fn reset_signals() -> Result<()> {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        let handler = if signal == libc::SIGPIPE {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        };
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); installing SIG_DFL or
        // SIG_IGN runs no code of ours. Signals the C library reserves fail with EINVAL,
        // which is ignored on purpose.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| Error::os("clear the signal mask", e.into()))
}

/// Puts 0, 1 and 2 on `/dev/null`, and touches no other descriptor (see "Descriptors" in the
/// module documentation).
fn redirect_stdio() -> Result<()> {
    let failed = |e: Errno| Error::os("redirect standard descriptors to /dev/null", e.into());
    let null = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open", "/dev/null", e.into()))?;
    // Each dup2 is checked; one onto the descriptor itself (when /dev/null landed on 0, 1 or
    // 2 because that one was closed) does nothing and succeeds.
    unistd::dup2_stdin(&null).map_err(failed)?;
    unistd::dup2_stdout(&null).map_err(failed)?;
    unistd::dup2_stderr(&null).map_err(failed)?;
    if null.as_raw_fd() <= 2 {
        // It is a standard descriptor now: it stays open, without close-on-exec like the others.
        nix::fcntl::fcntl(
            &null,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map_err(failed)?;
        let _ = null.into_raw_fd();
    }
    Ok(())
}

/// Closes the descriptors this process inherited from whoever started it: every descriptor
/// above 2 without close-on-exec, except `keep` (for example the sockets systemd hands over,
/// see [`listen`](crate::listen)). [`Daemon::run`](crate::Daemon::run) calls it first thing;
/// a program that calls [`daemonize`] itself calls it at its start.
///
/// A descriptor with close-on-exec cannot have survived an `exec`, so it was opened by this
/// process image, and is left alone. One without it was either inherited, and then no value
/// owns it unless the program claimed it (`unsafe` `from_raw_fd`), or opened by the program
/// without close-on-exec (`nix::fcntl::open`, `dup`, a socket without `SOCK_CLOEXEC`).
///
/// # Safety
///
/// No value may own a descriptor above 2 without close-on-exec (other than those in `keep`)
/// when this is called: the program has claimed no inherited descriptor and opened none
/// without close-on-exec so far. Call it before opening anything.
///
/// # Errors
///
/// [`Error::Os`] if the descriptor limit cannot be read (when `/proc` is missing).
pub unsafe fn close_inherited(keep: &[RawFd]) -> Result<()> {
    let open: Vec<RawFd> = match fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => {
            let (soft, _) =
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                    .map_err(|e| Error::os("read the descriptor limit", e.into()))?;
            (0..soft.min(1 << 16) as RawFd).collect()
        }
    };
    for fd in open {
        if fd <= 2 || keep.contains(&fd) {
            continue;
        }
        // SAFETY: F_GETFD only reads the descriptor's flags; a number that is not open (like
        // the directory stream read above, closed by now) gives -1 and is skipped.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags == -1 || flags & libc::FD_CLOEXEC != 0 {
            continue;
        }
        // SAFETY: without close-on-exec, so inherited or opened by this program; by the
        // caller's contract no value owns it.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Reports `error` over the pipe and ends this (child) process.
fn die(pipe: OwnedFd, error: &Error) -> ! {
    let message = match error {
        Error::Daemon(message) => message.clone(),
        other => other.to_string(),
    };
    let code = error.exit_code();
    let _ = Readiness { pipe: Some(pipe) }.fail_with_code(code, &message);
    // SAFETY: ends the forked child without running the launcher's exit handlers or
    // flushing buffers that the launcher owns too.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve() {
        assert_eq!(resolve_user("root").unwrap(), 0);
        assert_eq!(resolve_user("0").unwrap(), 0);
        assert_eq!(resolve_user(" 4321 ").unwrap(), 4321);
        assert_eq!(resolve_group("0").unwrap(), 0);
        let root_group = Group::from_gid(Gid::from_raw(0)).unwrap().unwrap().name;
        assert_eq!(resolve_group(&root_group).unwrap(), 0);
    }

    #[test]
    fn unknown_accounts_are_clear_errors() {
        let err = resolve_user("no-such-user-zd").unwrap_err();
        assert_eq!(err.to_string(), "unknown user 'no-such-user-zd'");
        assert_eq!(err.exit_code(), exit::NO_USER);
        let err = resolve_group("no-such-group-zd").unwrap_err();
        assert_eq!(err.to_string(), "unknown group 'no-such-group-zd'");
        assert!(resolve_user("").is_err());
        assert!(resolve_group("-5").is_err());
    }

    #[test]
    fn plan_takes_the_primary_group_and_checks_the_umask() {
        let opts = DaemonOptions {
            user: Some(0),
            ..Default::default()
        };
        let plan = Plan::new(&opts, Some(Path::new("/"))).unwrap();
        assert_eq!(plan.group, Some(Gid::from_raw(0)));
        assert_eq!(plan.work_dir.as_deref(), Some(Path::new("/")));
        assert_eq!(Plan::new(&opts, None).unwrap().work_dir, None);

        let opts = DaemonOptions {
            user: Some(3_999_999_999),
            ..Default::default()
        };
        let err = Plan::new(&opts, None).unwrap_err();
        assert!(err.to_string().contains("set a group"), "{err}");

        let opts = DaemonOptions {
            umask: Some(0o1777),
            ..Default::default()
        };
        let err = Plan::new(&opts, None).unwrap_err();
        assert_eq!(err.exit_code(), exit::CONFIG);
        assert!(err.to_string().contains("0o1777"), "{err}");
    }

    #[test]
    fn daemonize_refuses_a_threaded_process() {
        // The test harness runs this test on a thread of its own.
        let err = daemonize(&DaemonOptions::default()).unwrap_err();
        assert!(err.to_string().contains("threads run"), "{err}");
    }

    #[test]
    fn reports_round_trip() {
        fn sent(send: impl FnOnce(Readiness) -> Result<()>) -> Report {
            let (read, write) = unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
            send(Readiness { pipe: Some(write) }).unwrap();
            read_report(File::from(read))
        }
        assert_eq!(sent(|r| r.ready()), Report::Ready);
        assert_eq!(
            sent(|r| r.fail("disk full")),
            Report::Failed {
                code: 1,
                message: "disk full".into()
            }
        );
        assert_eq!(
            sent(|r| r.fail_with_code(78, "bad config")),
            Report::Failed {
                code: 78,
                message: "bad config".into()
            }
        );
        assert_eq!(
            sent(|r| {
                drop(r);
                Ok(())
            }),
            Report::Gone
        );
        assert_eq!(
            read_report(&b"F\0\0\0"[..]),
            Report::Gone,
            "a torn header counts as gone"
        );
        // A detached handle reports to nobody.
        Readiness::detached().ready().unwrap();
        Readiness::detached().fail("x").unwrap();
    }

    #[test]
    fn the_capability_check_sees_root_s_capabilities() {
        // The tests run as root, whose capability sets are full; an unprivileged run has none.
        let result = no_capabilities_left(Uid::from_raw(65534));
        if unistd::geteuid().is_root() {
            let err = result.unwrap_err();
            assert!(err.to_string().contains("capabilities remain"), "{err}");
        } else {
            result.unwrap();
        }
    }

    #[test]
    fn user_0_with_another_group_is_refused_and_names_stay_root_only_when_explicit() {
        let opts = DaemonOptions {
            user: Some(0),
            group: Some(65534),
            ..Default::default()
        };
        let err = Privileges::plan(&opts).unwrap_err();
        assert_eq!(err.exit_code(), exit::CONFIG);
        assert!(err.to_string().contains("every privilege of root"), "{err}");
        let opts = DaemonOptions {
            user: Some(0),
            group: Some(0),
            ..Default::default()
        };
        Privileges::plan(&opts).unwrap();
        let alias = root_only_when_explicit("toor", Uid::from_raw(0)).unwrap_err();
        assert_eq!(alias.exit_code(), exit::CONFIG);
        assert!(alias.to_string().contains("'toor' is user ID 0"), "{alias}");
        root_only_when_explicit("root", Uid::from_raw(0)).unwrap();
        root_only_when_explicit("toor", Uid::from_raw(7)).unwrap();
        assert_eq!(resolve_user("root").unwrap(), 0);
        assert_eq!(resolve_user("0").unwrap(), 0);
    }

    #[test]
    fn thread_count_reads_proc() {
        assert!(thread_count().unwrap() >= 1);
    }
}
