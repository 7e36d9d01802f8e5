//! Locked pidfiles: one running instance per pidfile, told apart from a stale file by its lock,
//! and never a way for another user to steer root's signals.
//!
//! # The locks, and why `fcntl`
//!
//! The pidfile carries two POSIX record locks (`fcntl(F_SETLK)`), each on one byte:
//!
//! * the **run lock** (byte 0), held by the running daemon for its whole life;
//! * the **start lock** (byte 1), held by a starting instance from before any user code runs
//!   (configuration, persistent state, log file) until its daemon holds the run lock, so a
//!   second instance is refused before it does anything.
//!
//! POSIX record locks were chosen over `flock` and open-file-description locks because:
//!
//! * they belong to a **process** and are **not inherited by `fork`**: a child that a service
//!   forks (without exec) and that outlives the daemon cannot keep the daemon "running"
//!   (issue 15.3); `flock` and OFD locks belong to the open file, which the child shares;
//! * `F_GETLK` **names the holder**: control actions signal a PID only when the process that
//!   holds the run lock is the one the file names. Someone who writes another PID into the
//!   file (a service user with write access to the directory) cannot make root signal it.
//!
//! Their known trap: closing *any* descriptor of the file drops every lock the process holds
//! on it. The daemon never opens its own pidfile a second time ([`probe`] runs in the control
//! actions, other processes). Because the forked daemon does not inherit the launcher's locks,
//! the launcher holds only the start lock; the daemon takes the run lock after the last fork
//! ([`Pidfile::hold`]) and the start lock ends with the launcher. At every instant one of them
//! is held, so two starts cannot both pass.
//!
//! # Nobody else's lock counts
//!
//! The daemon only ever takes write locks, which need the file open for writing. The file is
//! created with mode 0600 and belongs to the daemon's (effective) user, usually root, so no
//! other user can even open it, let alone lock it. A pidfile another user could have opened
//! and locked (a 0644 file of an older version, a file of another owner, a file with more than
//! one link) is never reused: it is replaced by a fresh file (created under a random name,
//! then renamed over it), so a squatter's lock stays on the old inode. [`probe`] counts only a
//! write lock, so a read lock squatted on a stale file never makes status say "running".
//!
//! # Life of the file
//!
//! * [`Pidfile::acquire`] (before any user code, before forking, while errors still reach the
//!   terminal) opens or creates the file through its directory's descriptor
//!   ([`safepath`]: the last component is never followed, the directory
//!   must pass the ownership rules) and takes the start lock.
//! * [`Pidfile::hold`] (in the process that runs, after the last fork) takes the run lock,
//!   writes its PID and releases the start lock.
//! * [`Pidfile::remove`] (or dropping the value) at a clean exit, only in the process whose PID
//!   is in the file: unlinks the file if the path still names it, through the directory held
//!   open since the start. A daemon that dropped its privileges (`--user`) usually cannot
//!   unlink in root's directory; it truncates the file to empty instead (the descriptor was
//!   opened for writing before the drop), and an empty, unlocked file reads as "not running".
//!   The service user gets no access to the file either way.
//!
//! Files are opened with `O_CLOEXEC` (no program the daemon starts inherits them),
//! `O_NOFOLLOW` and `O_NONBLOCK` (a planted FIFO cannot block the open).
//!
//! # Limitations
//!
//! A user who owns the pidfile's directory can rename the file away, and a start then takes
//! over the path while the first daemon runs on; it can never make an action signal a
//! process that does not hold the run lock. Two instances started at the same moment over a
//! squatted file of an older version both replace it; the daemon's own check that the path
//! still names its file after taking the run lock refuses the loser in all but a window of two
//! system calls.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::libc;

use crate::error::{Error, Result};
use crate::safepath::{self, Dir};

/// Permission bits of a new pidfile: only its owner may open it (see the module docs).
const MODE: u32 = 0o600;

/// The byte the running daemon locks.
const RUN: i64 = 0;
/// The byte a starting instance locks.
const START: i64 = 1;

/// How many times [`Pidfile::acquire`] retries when the file changes under it.
const ATTEMPTS: u32 = 50;

/// The pidfile bytes we read: a PID and a newline are at most 12.
const READ_LIMIT: usize = 64;

/// A pidfile that this process holds locked.
#[derive(Debug)]
pub struct Pidfile {
    file: File,
    dir: Dir,
    name: OsString,
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// The process allowed to remove the file: the PID last written.
    owner: i32,
    /// The process that acquired the file, and whether it created it: a start that fails
    /// before [`Pidfile::hold`] removes the file it created (nothing is left of a refused
    /// start).
    acquirer: i32,
    created: bool,
    /// Set once [`Pidfile::remove`] ran, so `Drop` does nothing more.
    done: bool,
}

impl Pidfile {
    /// Opens or creates the pidfile at `path` and takes its start lock. Nothing is written:
    /// the file keeps whatever a dead daemon left until [`Pidfile::hold`].
    ///
    /// A file whose daemon died (no run lock) is taken over; one that another user could have
    /// opened is replaced first (see the [module documentation](self)). The parent directory
    /// is not created.
    ///
    /// # Errors
    ///
    /// * [`Error::AlreadyRunning`] when a daemon holds the run lock (with the PID in the file,
    ///   or the holder's when the file names another), or another instance is starting (with
    ///   the starter's PID).
    /// * [`Error::Io`] naming the path when it cannot be opened, created or locked, or its
    ///   directory breaks the [ownership rules](crate::safepath) (exit code 77).
    pub fn acquire(path: impl AsRef<Path>) -> Result<Pidfile> {
        let path = path.as_ref();
        let (dir, name) =
            Dir::open_parent(path).map_err(|e| Error::io("open or create pidfile", path, e))?;
        for attempt in 0..ATTEMPTS {
            let (file, created) = match open_trusted(&dir, &name)
                .map_err(|e| Error::io("open or create pidfile", path, e))?
            {
                Some(opened) => opened,
                None => {
                    replace(&dir, &name).map_err(|e| Error::io("replace pidfile", path, e))?;
                    continue;
                }
            };
            match set_lock(&file, START, libc::F_WRLCK as i16) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(pid) = running_pid(&file, path)? {
                        return Err(Error::AlreadyRunning {
                            path: path.to_path_buf(),
                            pid: Some(pid),
                        });
                    }
                    match get_lock(&file, START, libc::F_WRLCK as i16)
                        .map_err(|e| Error::io("lock pidfile", path, e))?
                    {
                        Some((kind, holder)) if kind == libc::F_WRLCK as i16 => {
                            return Err(Error::AlreadyRunning {
                                path: path.to_path_buf(),
                                pid: Some(holder),
                            })
                        }
                        Some(_) => {
                            // A read lock: not ours (we only take write locks).
                            replace(&dir, &name)
                                .map_err(|e| Error::io("replace pidfile", path, e))?;
                        }
                        None => {}
                    }
                    std::thread::sleep(Duration::from_millis(1 + u64::from(attempt)));
                    continue;
                }
                Err(e) => return Err(Error::io("lock pidfile", path, e)),
            }
            if let Some(pid) = running_pid(&file, path)? {
                return Err(Error::AlreadyRunning {
                    path: path.to_path_buf(),
                    pid: Some(pid),
                });
            }
            if get_lock(&file, RUN, libc::F_WRLCK as i16)
                .map_err(|e| Error::io("lock pidfile", path, e))?
                .is_some()
            {
                // A read lock on the run byte: a squatter. Start over on a fresh file.
                replace(&dir, &name).map_err(|e| Error::io("replace pidfile", path, e))?;
                continue;
            }
            let meta = file
                .metadata()
                .map_err(|e| Error::io("inspect pidfile", path, e))?;
            let pidfile = Pidfile {
                file,
                dir: dir.clone(),
                name: name.clone(),
                path: path.to_path_buf(),
                dev: meta.dev(),
                ino: meta.ino(),
                owner: 0,
                acquirer: std::process::id() as i32,
                created,
                done: false,
            };
            // The previous owner may have removed the file, or another start replaced it,
            // between our open and our lock: then start over with what the path names now.
            if pidfile.names_our_file() != Some(true) {
                continue;
            }
            safepath::hold_dir(dir);
            return Ok(pidfile);
        }
        Err(Error::io(
            "lock pidfile",
            path,
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "the file kept changing or staying busy",
            ),
        ))
    }

    /// Takes the run lock in this process, writes its PID and releases the start lock. Call
    /// it in the daemon after the last fork (in the foreground: after [`Pidfile::acquire`]).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyRunning`] when another process holds the run lock or has replaced the
    /// file meanwhile; [`Error::Io`] naming the path when a lock or the write fails.
    pub fn hold(&mut self) -> Result<()> {
        match set_lock(&self.file, RUN, libc::F_WRLCK as i16) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let holder = get_lock(&self.file, RUN, libc::F_WRLCK as i16)
                    .ok()
                    .flatten()
                    .map(|(_, pid)| pid);
                return Err(Error::AlreadyRunning {
                    path: self.path.clone(),
                    pid: holder,
                });
            }
            Err(e) => return Err(Error::io("lock pidfile", &self.path, e)),
        }
        if self.names_our_file() == Some(false) {
            return Err(Error::AlreadyRunning {
                path: self.path.clone(),
                pid: None,
            });
        }
        self.write_pid(std::process::id() as i32)?;
        set_lock(&self.file, START, libc::F_UNLCK as i16)
            .map_err(|e| Error::io("unlock pidfile", &self.path, e))
    }

    /// Replaces the file's content with `"<pid>\n"`, and makes `pid` the process that removes
    /// the file at exit. [`Pidfile::hold`] writes its own PID with it.
    ///
    /// The new bytes are written first and the file is cut to length after, so a reader never
    /// sees an empty file (at worst the new PID followed by a tail of the old line, and only
    /// the first line counts).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the path when the write fails.
    pub fn write_pid(&mut self, pid: i32) -> Result<()> {
        let mut buf = [0u8; 16];
        let len = {
            let mut cursor = io::Cursor::new(&mut buf[..]);
            writeln!(cursor, "{pid}").expect("an i32 and a newline fit in 16 bytes");
            cursor.position()
        };
        self.file
            .write_all_at(&buf[..len as usize], 0)
            .and_then(|()| self.file.set_len(len))
            .map_err(|e| Error::io("write pidfile", &self.path, e))?;
        self.owner = pid;
        Ok(())
    }

    /// The pidfile's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path still names the file we hold; `None` when we cannot tell (after a
    /// privilege drop, the directory may not be searchable any more).
    fn names_our_file(&self) -> Option<bool> {
        match self.dir.stat(&self.name) {
            Ok(Some(st)) => Some(st.st_dev == self.dev && st.st_ino == self.ino),
            Ok(None) => Some(false),
            Err(_) => None,
        }
    }

    /// At a clean exit of the process whose PID was written: unlinks the file if the path
    /// still names it, else (no permission after a privilege drop) truncates it to empty;
    /// then closes it, which releases the locks.
    ///
    /// Dropping a `Pidfile` does the same and ignores errors.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the path when neither works.
    pub fn remove(mut self) -> Result<()> {
        self.done = true;
        self.remove_if_ours()
    }

    fn remove_if_ours(&self) -> Result<()> {
        let me = std::process::id() as i32;
        if self.owner == 0
            && self.acquirer == me
            && self.created
            && self.names_our_file() == Some(true)
        {
            // A start that failed before its daemon ran: remove the empty file it created.
            let _ = self.dir.unlink(&self.name);
            return Ok(());
        }
        if self.owner != me {
            return Ok(());
        }
        let unlinked = match self.names_our_file() {
            // Replaced meanwhile: the file at the path is not ours to remove.
            Some(false) => return Ok(()),
            Some(true) => self.dir.unlink(&self.name),
            None => Err(io::Error::from(io::ErrorKind::PermissionDenied)),
        };
        match unlinked {
            Ok(()) => Ok(()),
            Err(unlink) => self.file.set_len(0).map_err(|e| {
                let e = io::Error::new(
                    e.kind(),
                    format!("cannot unlink ({unlink}) nor truncate it ({e})"),
                );
                Error::io("remove pidfile", &self.path, e)
            }),
        }
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.remove_if_ours() {
                log::warn!("{e}");
            }
        }
    }
}

impl AsFd for Pidfile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Pidfile {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// What a pidfile says about its daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// There is no pidfile, or an empty one that nobody holds (a `--user` daemon stopped).
    NotRunning,
    /// The daemon with this PID runs: it holds the run lock and the file names it.
    Running {
        /// The PID in the file, which is the lock holder's.
        pid: i32,
    },
    /// The file names a process, but nobody holds its run lock: the daemon died and left it.
    Stale {
        /// The PID in the file, `None` when it holds no valid PID.
        pid: Option<i32>,
    },
    /// We cannot tell, and why (no permission, or a lock holder the file does not name).
    Unknown(String),
}

impl Probe {
    /// The LSB `status` exit code: 0 running, 1 dead with a pidfile, 3 not running, 4 unknown.
    pub fn lsb_code(&self) -> i32 {
        use crate::error::exit;
        match self {
            Probe::Running { .. } => exit::LSB_RUNNING,
            Probe::Stale { .. } => exit::LSB_DEAD_PIDFILE,
            Probe::NotRunning => exit::LSB_NOT_RUNNING,
            Probe::Unknown(_) => exit::LSB_UNKNOWN,
        }
    }
}

/// Tells whether the daemon of the pidfile at `path` runs: the run lock's holder (`F_GETLK`,
/// which never blocks or disturbs the daemon), compared with the PID in the file. Nothing is
/// written. Read locks do not count: the daemon never takes one.
///
/// Only a [`Probe::Running`] PID is safe to signal: it is the process that holds the lock
/// *and* is named in the file. Do not call this in the process that holds the pidfile
/// (closing the probe's descriptor would release that process's locks).
pub fn probe(path: impl AsRef<Path>) -> Probe {
    let path = path.as_ref();
    let opened =
        Dir::open_parent(path).and_then(|(dir, name)| dir.open_file(&name, OFlag::O_RDONLY, 0));
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Probe::NotRunning,
        Err(e) => return Probe::Unknown(Error::io("open pidfile", path, e).to_string()),
    };
    let holder = match get_lock(&file, RUN, libc::F_RDLCK as i16) {
        Ok(holder) => holder.map(|(_, pid)| pid),
        Err(e) => return Probe::Unknown(Error::io("lock pidfile", path, e).to_string()),
    };
    let content = read_pid(&file);
    match (holder, content) {
        (Some(holder), Ok(pid)) if pid == holder => Probe::Running { pid },
        (Some(holder), Ok(pid)) => Probe::Unknown(format!(
            "pidfile '{}' names pid {pid}, but pid {holder} holds its lock",
            path.display()
        )),
        (Some(holder), Err(why)) => Probe::Unknown(format!(
            "pidfile '{}' is locked by a running process (pid {holder}) but {why}",
            path.display()
        )),
        (None, Err(why)) if why == EMPTY => Probe::NotRunning,
        (None, Ok(pid)) => Probe::Stale { pid: Some(pid) },
        (None, Err(_)) => Probe::Stale { pid: None },
    }
}

/// The PID of the daemon that holds the run lock of `file`, when it is the one the file
/// names; a holder the file does not name still counts as running (the holder's PID).
fn running_pid(file: &File, path: &Path) -> Result<Option<i32>> {
    let holder = get_lock(file, RUN, libc::F_RDLCK as i16)
        .map_err(|e| Error::io("lock pidfile", path, e))?;
    Ok(holder.map(|(_, holder)| match read_pid(file) {
        Ok(pid) if pid == holder => pid,
        _ => holder,
    }))
}

/// Opens (or creates, mode 0600) the pidfile `name`, with whether we created it; `None` when
/// the file exists but must be replaced: another user could have opened it (its mode lets
/// others read or write, it belongs to someone else, it has other links).
fn open_trusted(dir: &Dir, name: &std::ffi::OsStr) -> io::Result<Option<(File, bool)>> {
    let opened = match dir.open_file(name, OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL, MODE) {
        Ok(file) => Ok((file, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => dir
            .open_file(name, OFlag::O_RDWR | OFlag::O_CREAT, MODE)
            .map(|file| (file, false)),
        Err(e) => Err(e),
    };
    match opened {
        Ok((file, created)) => {
            let meta = file.metadata()?;
            let ours = meta.uid() == nix::unistd::geteuid().as_raw();
            if ours && meta.mode() & 0o077 == 0 {
                Ok(Some((file, created)))
            } else {
                Ok(None)
            }
        }
        // Refused by the ownership rules, but a regular file in an acceptable directory:
        // another user's file (or a hard link) that we do not open, only replace.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied && replaceable(dir, name) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `name` is a regular file (of whatever owner), which [`replace`] may rename over.
fn replaceable(dir: &Dir, name: &std::ffi::OsStr) -> bool {
    use nix::sys::stat::SFlag;
    matches!(dir.stat(name), Ok(Some(st))
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG)
}

/// Puts a fresh, empty 0600 file of ours at `name`: created under a random name (exclusively)
/// and renamed over the old one, so nobody holds a descriptor (or a lock) of it.
fn replace(dir: &Dir, name: &std::ffi::OsStr) -> io::Result<()> {
    for _ in 0..16 {
        let mut random = [0u8; 8];
        safepath::random_bytes(&mut random)?;
        let mut temp = OsString::from(".");
        temp.push(name);
        temp.push(format!(".{}.", std::process::id()));
        for b in random {
            temp.push(format!("{b:02x}"));
        }
        temp.push(".tmp");
        match dir.open_file(&temp, OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL, MODE) {
            Ok(_) => {
                let renamed = dir.rename(&temp, name);
                if renamed.is_err() {
                    let _ = dir.unlink(&temp);
                }
                return renamed;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free temporary name"))
}

/// `fcntl(F_SETLK)` of the one byte at `start` (`F_WRLCK`, `F_RDLCK` or `F_UNLCK`);
/// a conflict is `WouldBlock`.
fn set_lock(file: &File, start: i64, kind: i16) -> io::Result<()> {
    let mut lock = flock_struct(start, kind);
    loop {
        // SAFETY: F_SETLK reads the live `flock` struct; the descriptor is borrowed, so open.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &mut lock) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN | libc::EACCES) => {
                return Err(io::Error::new(io::ErrorKind::WouldBlock, "locked"))
            }
            _ => return Err(e),
        }
    }
}

/// `fcntl(F_GETLK)`: the lock that would conflict with a `kind` lock of the byte at `start`,
/// as (its kind, its holder's PID); `None` when there is none. Locks of this very process
/// never conflict, so never show.
fn get_lock(file: &File, start: i64, kind: i16) -> io::Result<Option<(i16, i32)>> {
    let mut lock = flock_struct(start, kind);
    // SAFETY: F_GETLK reads and fills the live `flock` struct; the descriptor is open.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) } == -1 {
        return Err(io::Error::last_os_error());
    }
    if lock.l_type == libc::F_UNLCK as i16 {
        Ok(None)
    } else {
        Ok(Some((lock.l_type, lock.l_pid)))
    }
}

fn flock_struct(start: i64, kind: i16) -> libc::flock {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are valid.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as i16;
    lock.l_start = start;
    lock.l_len = 1;
    lock
}

/// What [`parse_pid`] says about an empty file.
const EMPTY: &str = "holds no PID (it is empty)";

/// Reads and parses the PID at the start of the file.
fn read_pid(file: &File) -> std::result::Result<i32, String> {
    let mut buf = [0u8; READ_LIMIT];
    let mut len = 0;
    while len < buf.len() {
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot be read: {e}")),
        }
    }
    parse_pid(&buf[..len])
}

/// The PID on the first line: decimal digits around optional blanks, greater than zero.
/// (pyzenkit accepted 0 and negative numbers, and `kill(-1)` signals every process.)
fn parse_pid(content: &[u8]) -> std::result::Result<i32, String> {
    let line = content.split(|&b| b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return Err(EMPTY.into());
    }
    match text.parse::<i32>() {
        Ok(pid) if pid > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(pid),
        _ => Err(format!("holds '{}', not a PID", text.escape_debug())),
    }
}

/// A forked child that holds a pidfile's run lock, for tests in other modules (the locks of
/// the test process itself never conflict with its own).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct ChildHolder {
    /// The child's PID, which it wrote into the file.
    pub pid: i32,
    release: Option<std::os::fd::OwnedFd>,
}

#[cfg(test)]
impl ChildHolder {
    /// Forks a child that creates the file at `path`, locks its run byte, writes its PID and
    /// waits until this value is dropped. The child makes raw system calls only (other test
    /// threads may hold locks at the fork).
    pub(crate) fn lock(path: &Path) -> ChildHolder {
        use std::os::unix::ffi::OsStrExt;
        let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        let (ready_r, ready_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let (release_r, release_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        // SAFETY: the child only calls async-signal-safe functions, then _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let mut lock = flock_struct(RUN, libc::F_WRLCK as i16);
                // SAFETY: raw calls on live buffers and descriptors; the child then exits.
                unsafe {
                    // Descriptors of other tests' children (their release pipes) must not
                    // stay open here, or two children would keep each other waiting.
                    for fd in 3..1024 {
                        if fd != ready_w.as_raw_fd() && fd != release_r.as_raw_fd() {
                            libc::close(fd);
                        }
                    }
                    let fd = libc::open(cpath.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600);
                    let mut digits = [0u8; 16];
                    let mut n = libc::getpid();
                    let mut i = digits.len() - 1;
                    digits[i] = b'\n';
                    loop {
                        i -= 1;
                        digits[i] = b'0' + (n % 10) as u8;
                        n /= 10;
                        if n == 0 {
                            break;
                        }
                    }
                    let ok = fd >= 0
                        && libc::fcntl(fd, libc::F_SETLK, &mut lock) == 0
                        && libc::ftruncate(fd, 0) == 0
                        && libc::write(fd, digits[i..].as_ptr().cast(), digits.len() - i) > 0;
                    let byte = if ok { b'R' } else { b'F' };
                    libc::write(ready_w.as_raw_fd(), (&byte as *const u8).cast(), 1);
                    let mut buf = 0u8;
                    libc::read(release_r.as_raw_fd(), (&mut buf as *mut u8).cast(), 1);
                    libc::_exit(0)
                }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(ready_w);
                drop(release_r);
                let mut byte = [0u8];
                std::io::Read::read_exact(&mut File::from(ready_r), &mut byte).unwrap();
                assert_eq!(
                    byte[0],
                    b'R',
                    "the child could not lock '{}'",
                    path.display()
                );
                ChildHolder {
                    pid: child.as_raw(),
                    release: Some(release_w),
                }
            }
        }
    }
}

#[cfg(test)]
impl Drop for ChildHolder {
    fn drop(&mut self) {
        drop(self.release.take());
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Mutex, MutexGuard};

    use nix::sys::wait::waitpid;
    use nix::unistd::{fork, ForkResult};

    /// Pidfile tests run one at a time: a forked child must not inherit another test's files.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn me() -> i32 {
        std::process::id() as i32
    }

    /// The holder of the run lock of `path` as another process sees it (`F_GETLK` in a
    /// forked child that makes raw system calls only: other test threads may hold locks).
    fn holder_seen_from_another_process(path: &Path) -> Option<i32> {
        use std::os::unix::ffi::OsStrExt;
        let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        // SAFETY: the child only calls open, fcntl, write and _exit (async-signal-safe).
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let mut lock = flock_struct(RUN, libc::F_RDLCK as i16);
                // SAFETY: raw calls on a live C string, struct and descriptors.
                unsafe {
                    let fd = libc::open(cpath.as_ptr(), libc::O_RDONLY);
                    let mut pid: i32 = -1;
                    if fd >= 0 && libc::fcntl(fd, libc::F_GETLK, &mut lock) == 0 {
                        pid = if lock.l_type == libc::F_UNLCK as i16 {
                            0
                        } else {
                            lock.l_pid
                        };
                    }
                    libc::write(write.as_raw_fd(), (&pid as *const i32).cast(), 4);
                    libc::_exit(0)
                }
            }
            ForkResult::Parent { child } => {
                drop(write);
                let mut buf = [0u8; 4];
                std::io::Read::read_exact(&mut File::from(read), &mut buf).unwrap();
                waitpid(child, None).unwrap();
                match i32::from_ne_bytes(buf) {
                    -1 => panic!("the child could not look"),
                    0 => None,
                    pid => Some(pid),
                }
            }
        }
    }

    #[test]
    fn acquire_and_hold_make_a_0600_file_with_our_pid() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        let mut pidfile = Pidfile::acquire(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "",
            "nothing written before hold"
        );
        assert_eq!(holder_seen_from_another_process(&path), None);
        pidfile.hold().unwrap();
        assert_eq!(pidfile.path(), path);
        assert_eq!(holder_seen_from_another_process(&path), Some(me()));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        // (Reading the file in this process closes a descriptor of it, which drops our own
        // locks: the POSIX trap the module documentation describes. So this comes last.)
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n", me()));
        drop(pidfile);
        assert!(!path.exists());
        assert_eq!(probe(&path), Probe::NotRunning);
    }

    #[test]
    fn files_others_could_open_are_replaced() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        fs::write(&path, "99999999\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            probe(&path),
            Probe::Stale {
                pid: Some(99999999)
            }
        );
        let old = fs::metadata(&path).unwrap().ino();
        let mut pidfile = Pidfile::acquire(&path).unwrap();
        assert_ne!(
            fs::metadata(&path).unwrap().ino(),
            old,
            "a 0644 file is not reused"
        );
        pidfile.hold().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n", me()));
        pidfile.remove().unwrap();
        // Only the pidfile is left behind in the directory: no temporary file.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_empty_unlocked_file_is_not_running_and_garbage_is_stale() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        fs::write(&path, "").unwrap();
        assert_eq!(probe(&path), Probe::NotRunning);
        fs::write(&path, "hello\n").unwrap();
        assert_eq!(probe(&path), Probe::Stale { pid: None });
    }

    #[test]
    fn only_the_written_pid_removes_the_file() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        let mut pidfile = Pidfile::acquire(&path).unwrap();
        pidfile.write_pid(me() + 1).unwrap(); // as if a forked daemon owned it
        pidfile.remove().unwrap();
        assert!(path.exists());
    }

    #[test]
    fn parse_pid_rules() {
        assert_eq!(parse_pid(b"123\n"), Ok(123));
        assert_eq!(parse_pid(b"  77  \nextra"), Ok(77));
        assert_eq!(parse_pid(b"99\n45\n"), Ok(99)); // a torn write_pid: first line counts
        assert_eq!(parse_pid(b"").unwrap_err(), EMPTY);
        assert!(parse_pid(b"0\n").is_err());
        assert!(parse_pid(b"+5\n").is_err());
        assert!(parse_pid(b"-1\n").is_err());
        assert!(parse_pid(b"99999999999\n").is_err());
        assert_eq!(parse_pid(b"12a\n").unwrap_err(), "holds '12a', not a PID");
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("d.pid");
        let err = Pidfile::acquire(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("cannot open or create pidfile '"), "{msg}");
        assert!(msg.contains("no-such-dir/d.pid"), "{msg}");
        assert!(msg.contains("No such file or directory"), "{msg}");
        assert!(!dir.path().join("no-such-dir").exists());
    }

    #[test]
    fn symlinks_and_directories_are_refused() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        fs::write(&target, "precious").unwrap();
        let link = dir.path().join("d.pid");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = Pidfile::acquire(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(err.exit_code(), crate::error::exit::NO_PERMISSION);
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        assert!(matches!(probe(&link), Probe::Unknown(_)));

        let sub = dir.path().join("sub.pid");
        fs::create_dir(&sub).unwrap();
        let err = Pidfile::acquire(&sub).unwrap_err();
        assert!(err.to_string().contains("sub.pid"), "{err}");
    }

    #[test]
    fn drop_leaves_a_file_that_is_no_longer_ours() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        let mut pidfile = Pidfile::acquire(&path).unwrap();
        pidfile.hold().unwrap();
        // Someone replaced the file at the path (a new instance after a forced unlink).
        let other = dir.path().join("other");
        fs::write(&other, "1\n").unwrap();
        fs::rename(&other, &path).unwrap();
        drop(pidfile);
        assert_eq!(fs::read_to_string(&path).unwrap(), "1\n");
    }
}
