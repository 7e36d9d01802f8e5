//! Locked pidfiles: one running instance per pidfile, told apart from a stale file by its lock.
//!
//! The daemon holds an exclusive `flock` on its pidfile for its whole life. The lock, not the
//! file's existence, says whether the daemon runs: a daemon killed by `SIGKILL` leaves its file
//! behind, but the kernel drops the lock, so the next start takes the stale file over
//! (pyzenkit created the file with `O_EXCL`, so a stale one blocked every restart).
//!
//! * [`Pidfile::acquire`] opens (or creates) the file and takes the lock **before** forking,
//!   while errors still reach the terminal. A `flock` belongs to the open file description, so
//!   the forked daemon inherits it; keep the descriptor open across daemonization
//!   ([`Pidfile::as_raw_fd`] goes into the keep list).
//! * [`Pidfile::write_pid`] writes the daemon's PID after the last fork.
//! * [`Pidfile::remove`] (or dropping the value) unlinks the file at a clean exit, only in the
//!   process whose PID is in the file and only if the path still names the locked file.
//! * [`probe`] tells the control actions whether a daemon really runs, without disturbing it.
//!
//! Files are opened with `O_CLOEXEC` (no program the daemon starts inherits the lock) and
//! `O_NOFOLLOW` (a symbolic link planted at the path is refused), mode 0644.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{open, OFlag};
use nix::libc;
use nix::sys::stat::Mode;

use crate::error::{Error, Result};

/// Permission bits of a new pidfile (before the umask).
const MODE: u32 = 0o644;

/// How many times [`Pidfile::acquire`] retries when the file changes under it or a [`probe`]
/// holds a shared lock for a moment.
const ATTEMPTS: u32 = 50;

/// The pidfile bytes we read: a PID and a newline are at most 12.
const READ_LIMIT: usize = 64;

/// A pidfile that this process (and its forked daemon) holds locked.
#[derive(Debug)]
pub struct Pidfile {
    file: File,
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// The process allowed to remove the file: the PID last written.
    owner: i32,
    /// Set once [`Pidfile::remove`] ran, so `Drop` does nothing more.
    done: bool,
}

impl Pidfile {
    /// Opens or creates the pidfile at `path` and takes its exclusive lock; writes this
    /// process's PID into it.
    ///
    /// A file left by a dead process (its lock is free) is taken over. The parent directory
    /// is not created.
    ///
    /// # Errors
    ///
    /// * [`Error::AlreadyRunning`] with the PID read from the file when another process holds
    ///   the lock; the file is then neither truncated nor written. (In the instant between
    ///   another instance's lock and its write, the PID read is the previous content's.)
    /// * [`Error::Io`] naming the path when it cannot be opened or created (missing directory,
    ///   permission, a symbolic link, not a regular file) or locked.
    pub fn acquire(path: impl AsRef<Path>) -> Result<Pidfile> {
        let path = path.as_ref();
        for attempt in 0..ATTEMPTS {
            let file = open_file(path, OFlag::O_RDWR | OFlag::O_CREAT)?;
            match flock(file.as_fd(), libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Held by a daemon (exclusive) or, for a moment, by a probe (shared). A
                    // shared lock succeeds only in the second case.
                    match flock(file.as_fd(), libc::LOCK_SH | libc::LOCK_NB) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            let pid = read_pid(&file).ok();
                            return Err(Error::AlreadyRunning {
                                path: path.to_path_buf(),
                                pid,
                            });
                        }
                        Err(e) => return Err(Error::io("lock pidfile", path, e)),
                        Ok(()) => {
                            drop(file);
                            std::thread::sleep(Duration::from_millis(1 + u64::from(attempt)));
                            continue;
                        }
                    }
                }
                Err(e) => return Err(Error::io("lock pidfile", path, e)),
            }
            let ours = file
                .metadata()
                .map_err(|e| Error::io("inspect pidfile", path, e))?;
            let mut pidfile = Pidfile {
                file,
                path: path.to_path_buf(),
                dev: ours.dev(),
                ino: ours.ino(),
                owner: 0,
                done: false,
            };
            // Replace a stale PID at once: until this write, a process that finds the file
            // locked reads the PID of the previous (dead) owner, or nothing in a file we have
            // just created. The window is two system calls wide.
            pidfile.write_pid(std::process::id() as i32)?;
            // The previous owner may have unlinked the file between our open and our lock;
            // then we locked an orphan and must start over with whatever the path names now.
            // (`owner` is set, but the orphan is never the file at the path, so dropping
            // it removes nothing.)
            match fs::symlink_metadata(path) {
                Ok(now) if now.dev() == pidfile.dev && now.ino() == pidfile.ino => {}
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("inspect pidfile", path, e)),
            }
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

    /// Replaces the file's content with `"<pid>\n"`, and makes `pid` the process that removes
    /// the file at exit. Call it in the daemon after the last fork, with its own PID.
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

    /// Removes the file if this process is the one whose PID was written and the path still
    /// names the file we locked; then closes it, which releases the lock.
    ///
    /// Dropping a `Pidfile` does the same and ignores errors.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the path when the unlink fails.
    pub fn remove(mut self) -> Result<()> {
        self.done = true;
        self.remove_if_ours()
    }

    fn remove_if_ours(&self) -> Result<()> {
        if self.owner != std::process::id() as i32 {
            return Ok(());
        }
        match fs::symlink_metadata(&self.path) {
            Ok(now) if now.dev() == self.dev && now.ino() == self.ino => {
                fs::remove_file(&self.path).map_err(|e| Error::io("remove pidfile", &self.path, e))
            }
            _ => Ok(()),
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
    /// There is no pidfile.
    NotRunning,
    /// The file is locked: the daemon with this PID runs.
    Running {
        /// The PID in the file.
        pid: i32,
    },
    /// The file exists but nobody holds its lock: the daemon died and left it.
    Stale {
        /// The PID in the file, `None` when it holds no valid PID.
        pid: Option<i32>,
    },
    /// We cannot tell, and why (no permission, or a locked file without a valid PID).
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

/// Tells whether the daemon of the pidfile at `path` runs, by trying a shared lock
/// (`LOCK_SH | LOCK_NB`): it fails only while the daemon holds its exclusive lock, and never
/// blocks or disturbs a running daemon. Nothing is written.
///
/// Only a [`Probe::Running`] PID is safe to signal: a PID from a stale file may belong to an
/// unrelated process by now.
pub fn probe(path: impl AsRef<Path>) -> Probe {
    let path = path.as_ref();
    // A second look when the file vanished or was replaced while we checked it.
    for _ in 0..2 {
        let file = match open_file(path, OFlag::O_RDONLY) {
            Ok(file) => file,
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Probe::NotRunning;
            }
            Err(e) => return Probe::Unknown(e.to_string()),
        };
        match flock(file.as_fd(), libc::LOCK_SH | libc::LOCK_NB) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return match read_pid(&file) {
                    Ok(pid) => Probe::Running { pid },
                    Err(why) => Probe::Unknown(format!(
                        "pidfile '{}' is locked by a running process but {why}",
                        path.display()
                    )),
                };
            }
            Err(e) => return Probe::Unknown(Error::io("lock pidfile", path, e).to_string()),
            Ok(()) => {
                let pid = read_pid(&file).ok();
                let same = match (file.metadata(), fs::symlink_metadata(path)) {
                    (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                    _ => false,
                };
                if same {
                    return Probe::Stale { pid };
                }
            }
        }
    }
    Probe::Unknown(format!("pidfile '{}' keeps changing", path.display()))
}

/// Opens the pidfile close-on-exec, refusing symbolic links and anything but a regular file.
fn open_file(path: &Path, flags: OFlag) -> Result<File> {
    let flags = flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let action = if flags.contains(OFlag::O_CREAT) {
        "open or create pidfile"
    } else {
        "open pidfile"
    };
    let fd = open(path, flags, Mode::from_bits_truncate(MODE))
        .map_err(|e| Error::io(action, path, e.into()))?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| Error::io(action, path, e))?;
    if !meta.file_type().is_file() {
        let e = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
        return Err(Error::io(action, path, e));
    }
    Ok(file)
}

/// `flock(2)` on a descriptor, retried on `EINTR`.
fn flock(fd: BorrowedFd<'_>, operation: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock only takes a descriptor, borrowed and therefore open, and an integer.
        if unsafe { libc::flock(fd.as_raw_fd(), operation) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

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
        return Err("holds no PID (it is empty)".into());
    }
    match text.parse::<i32>() {
        Ok(pid) if pid > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(pid),
        _ => Err(format!("holds '{}', not a PID", text.escape_debug())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Mutex, MutexGuard};

    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    /// Pidfile tests run one at a time: the fork test's child must not inherit (and so keep
    /// locked) another test's pidfile.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn me() -> i32 {
        std::process::id() as i32
    }

    /// The process umask, read without changing it (other test threads create files).
    fn current_umask() -> u32 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    #[test]
    fn acquire_creates_a_locked_0644_file_with_our_pid() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        let pidfile = Pidfile::acquire(&path).unwrap();
        assert_eq!(pidfile.path(), path);
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n", me()));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644 & !current_umask());
        assert_eq!(probe(&path), Probe::Running { pid: me() });
        drop(pidfile);
        assert!(!path.exists());
        assert_eq!(probe(&path), Probe::NotRunning);
    }

    #[test]
    fn second_instance_is_refused_and_the_file_is_untouched() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        let mut first = Pidfile::acquire(&path).unwrap();
        first.write_pid(4242).unwrap();
        // flock locks belong to open file descriptions: a second open conflicts even here.
        let err = Pidfile::acquire(&path).unwrap_err();
        assert!(
            matches!(&err, Error::AlreadyRunning { path: p, pid: Some(4242) } if *p == path),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), crate::error::exit::ALREADY_RUNNING);
        assert!(
            err.to_string().contains("already running (pid 4242)"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "4242\n");
        assert_eq!(probe(&path), Probe::Running { pid: 4242 });
    }

    #[test]
    fn stale_file_is_taken_over() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        fs::write(&path, "99999999\n").unwrap();
        assert_eq!(
            probe(&path),
            Probe::Stale {
                pid: Some(99999999)
            }
        );
        let pidfile = Pidfile::acquire(&path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n", me()));
        pidfile.remove().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn garbage_content_is_reported_clearly() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        fs::write(&path, "hello\n").unwrap();
        assert_eq!(probe(&path), Probe::Stale { pid: None });
        fs::write(&path, "").unwrap();
        assert_eq!(probe(&path), Probe::Stale { pid: None });

        let pidfile = Pidfile::acquire(&path).unwrap();
        fs::write(&path, "-1\n").unwrap(); // another writer, not stopped by flock
        match probe(&path) {
            Probe::Unknown(why) => {
                assert!(why.contains("is locked by a running process"), "{why}");
                assert!(why.contains("holds '-1', not a PID"), "{why}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = Pidfile::acquire(&path).unwrap_err();
        assert!(
            matches!(err, Error::AlreadyRunning { pid: None, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("is locked"), "{err}");
        drop(pidfile);
    }

    #[test]
    fn concurrent_starts_with_a_prober_give_exactly_one_owner() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        fs::write(&path, "99999999\n").unwrap(); // stale
        for _round in 0..20 {
            let barrier = std::sync::Barrier::new(9);
            let stop = std::sync::atomic::AtomicBool::new(false);
            let (won, refused) = std::thread::scope(|s| {
                let prober = s.spawn(|| {
                    barrier.wait();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        assert!(!matches!(probe(&path), Probe::Unknown(_)));
                    }
                });
                let starters: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            Pidfile::acquire(&path)
                        })
                    })
                    .collect();
                let results: Vec<_> = starters.into_iter().map(|t| t.join().unwrap()).collect();
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                prober.join().unwrap();
                // A loser that looks in the instant between the winner's lock and its write
                // reads the stale PID; never anything else, never an empty file.
                let refused = results
                    .iter()
                    .filter(|r| {
                        matches!(r, Err(Error::AlreadyRunning { pid: Some(p), .. })
                            if *p == me() || *p == 99999999)
                    })
                    .count();
                let won: Vec<Pidfile> = results.into_iter().filter_map(|r| r.ok()).collect();
                (won, refused)
            });
            assert_eq!((won.len(), refused), (1, 7));
            assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n", me()));
            let mut winner = won.into_iter().next().unwrap();
            winner.write_pid(99999999).unwrap(); // leave it stale for the next round
            winner.remove().unwrap();
        }
    }

    #[test]
    fn parse_pid_rules() {
        assert_eq!(parse_pid(b"123\n"), Ok(123));
        assert_eq!(parse_pid(b"  77  \nextra"), Ok(77));
        assert_eq!(parse_pid(b"99\n45\n"), Ok(99)); // a torn write_pid: first line counts
        assert!(parse_pid(b"").unwrap_err().contains("empty"));
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
        assert!(Pidfile::acquire(&link).is_err());
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
        let pidfile = Pidfile::acquire(&path).unwrap();
        // Someone replaced the file at the path (a new instance after a forced unlink).
        let other = dir.path().join("other");
        fs::write(&other, "1\n").unwrap();
        fs::rename(&other, &path).unwrap();
        drop(pidfile);
        assert_eq!(fs::read_to_string(&path).unwrap(), "1\n");
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
    fn lock_survives_fork_and_dies_with_the_holder() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        let mut pidfile = Pidfile::acquire(&path).unwrap();
        let (go_read, go_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let keep = [pidfile.as_raw_fd(), go_read.as_raw_fd()];

        // SAFETY: the child only calls async-signal-safe functions (close, read, _exit) before
        // it exits, so it is sound even though other test threads run in this process.
        let child = match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                for fd in 3..4096 {
                    if !keep.contains(&fd) {
                        // SAFETY: closing descriptors in the child; none is used again.
                        unsafe { libc::close(fd) };
                    }
                }
                let mut byte = 0u8;
                // SAFETY: reading one byte into a live local; then the child exits at once.
                unsafe {
                    libc::read(go_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
                    libc::_exit(0);
                }
            }
            ForkResult::Parent { child } => child,
        };
        drop(go_read);

        // Like a launcher: write the daemon's PID, then close our descriptor. The child's
        // copy of the open file description keeps the lock.
        pidfile.write_pid(child.as_raw()).unwrap();
        drop(pidfile);
        assert!(
            path.exists(),
            "the launcher must not remove the daemon's pidfile"
        );
        assert_eq!(
            probe(&path),
            Probe::Running {
                pid: child.as_raw()
            }
        );
        let err = Pidfile::acquire(&path).unwrap_err();
        assert!(
            matches!(err, Error::AlreadyRunning { pid: Some(p), .. } if p == child.as_raw()),
            "{err:?}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{child}\n"));

        // The holder dies without cleaning up: the file is stale and is taken over.
        drop(go_write);
        assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
        assert_eq!(
            probe(&path),
            Probe::Stale {
                pid: Some(child.as_raw())
            }
        );
        let pidfile = Pidfile::acquire(&path).unwrap();
        assert_eq!(probe(&path), Probe::Running { pid: me() });
        pidfile.remove().unwrap();
    }
}
