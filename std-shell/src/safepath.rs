//! Ownership rules for every path the shell opens, and directories held open across a
//! privilege drop.
//!
//! The daemon usually starts as root and writes into directories that other users may share
//! (`/run/<svc>/` belongs to the service user, `/tmp` to everybody). A path is only a name: if
//! another local user can change what it names, root's writes land where that user chooses.
//! In the spirit of systemd's "unsafe path transition" check and BSD's `pidfile(3)`, the
//! shell therefore opens its files (pidfile, log file, runlog directory and runlogs, state and
//! persistent state files) only through a [`Dir`], which enforces:
//!
//! * **No symbolic link in the last component.** Files and the runlog directory are opened
//!   with `O_NOFOLLOW`, relative to their parent's descriptor (`openat`), so a link planted at
//!   the path is refused, never followed. A symbolic link in an earlier component is followed
//!   only when it belongs to root or to us (links of the service user or a third user are
//!   refused), the rule Linux's `fs.protected_symlinks` applies to sticky directories.
//! * **Trusted owners only.** Every directory on the way and every existing file must belong
//!   to root, to the effective user, or to the user the daemon will run as
//!   ([`set_service_user`]); anything owned by another user is refused. A file must be a
//!   regular file with a single link (a hard link to `/etc/shadow` is not a log file).
//! * **No directory every user may write to**, unless it is sticky (`/tmp`): there other users
//!   cannot rename or remove our files, but may plant their own, so a file there must be ours.
//!   Group-writable directories are accepted (the group is the administrator's choice, as in
//!   Debian's `root:adm /var/log`); the file rules above still hold in them.
//!
//! A refusal is an [`io::Error`] of kind `PermissionDenied` whose text names the offending
//! path and its owner; the callers wrap it into [`Error::Io`](crate::error::Error::Io), which
//! ends a start with exit code 77 (`EX_NOPERM`).
//!
//! # Held directories
//!
//! [`hold`] opens a directory once, before daemonizing, and keeps its descriptor for the
//! life of the process; [`Dir::open`] on the same path later returns the held descriptor
//! instead of walking the path again. After a privilege drop (`--user nobody`) or a chroot the
//! path may no longer be reachable (a root-only ancestor, a path outside the new root), but
//! `openat` on the held descriptor needs only the permissions of that one directory. This is
//! how the log is reopened on `SIGHUP` and how the pidfile, runlogs and state files are
//! written after the drop. A held directory is the one that was checked at start: renaming an
//! ancestor later does not redirect the daemon.
//!
//! # Limitations
//!
//! The checks are made when a path is opened; a directory that root later gives to another
//! user is not noticed. A user who owns a directory can always rename or replace what is in
//! it: the rules keep such a user from steering root, not from disturbing the service that
//! runs as that very user (the [pidfile](crate::pidfile) module says what this means for
//! pidfiles).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag, AT_FDCWD};
use nix::libc;
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// No service user.
const NO_UID: u32 = u32::MAX;

/// The user the daemon runs as after the privilege drop, or [`NO_UID`].
static SERVICE_UID: AtomicU32 = AtomicU32::new(NO_UID);

/// Directories opened before the privilege drop ([`hold`]).
static HELD: Mutex<Vec<Dir>> = Mutex::new(Vec::new());

/// Makes `uid` (the `--user` the daemon will switch to) a trusted owner besides root and the
/// effective user; `None` forgets it. Call it before opening any path.
pub fn set_service_user(uid: Option<u32>) {
    SERVICE_UID.store(uid.unwrap_or(NO_UID), Ordering::Relaxed);
}

/// Whether files and directories of `uid` may be used.
fn trusted(uid: u32) -> bool {
    uid == 0
        || uid == nix::unistd::geteuid().as_raw()
        || (uid != NO_UID && uid == SERVICE_UID.load(Ordering::Relaxed))
}

/// `uid 65534 (nobody)`, or just the number when the account database does not know it.
fn describe_uid(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("uid {uid} ({})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// The trusted owners, for messages.
fn trusted_owners() -> String {
    let euid = nix::unistd::geteuid().as_raw();
    let mut owners = String::from("root");
    if euid != 0 {
        owners.push_str(&format!(" or {}", describe_uid(euid)));
    }
    let service = SERVICE_UID.load(Ordering::Relaxed);
    if service != NO_UID && service != 0 && service != euid {
        owners.push_str(&format!(" or the service user ({})", describe_uid(service)));
    }
    owners
}

fn refused(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("refused '{}': {why}", path.display()),
    )
}

/// Checks a directory's owner and mode; returns whether every user may write to it (then it
/// is sticky, and files in it must be ours).
fn check_dir(st: &FileStat, path: &Path) -> io::Result<bool> {
    if !trusted(st.st_uid) {
        return Err(refused(
            path,
            format!(
                "the directory belongs to {}, not to {}",
                describe_uid(st.st_uid),
                trusted_owners()
            ),
        ));
    }
    let mode = st.st_mode & 0o7777;
    let world_writable = mode & 0o002 != 0;
    if world_writable && mode & 0o1000 == 0 {
        return Err(refused(
            path,
            format!("every user may write to the directory and it is not sticky (mode {mode:04o})"),
        ));
    }
    Ok(world_writable)
}

/// An open directory whose path passed the rules of the [module documentation](self); files
/// in it are opened relative to it.
#[derive(Debug, Clone)]
pub struct Dir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    /// Every user may write to it (it is sticky): files in it must be ours.
    shared: bool,
}

impl Dir {
    /// The held directory at `path` ([`hold`]), or else `path` opened by walking it from the
    /// root one component at a time; the last component must not be a symbolic link.
    ///
    /// # Errors
    ///
    /// The OS error of a missing or unreadable component, or `PermissionDenied` naming the
    /// component that breaks a rule.
    pub fn open(path: &Path) -> io::Result<Dir> {
        if let Some(dir) = held(path) {
            return Ok(dir);
        }
        walk(path)
    }

    /// The directory of the file at `path` (opened as [`Dir::open`] does, its last component
    /// may be a trusted link), and the file's name in it.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `path` does not name a file (`/`, a trailing slash, `..`), and the
    /// errors of [`Dir::open`].
    pub fn open_parent(path: &Path) -> io::Result<(Dir, OsString)> {
        let name = match path.file_name() {
            Some(name) if !path.as_os_str().as_bytes().ends_with(b"/") => name.to_os_string(),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the path does not name a file",
                ))
            }
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Some(dir) = held(parent) {
            return Ok((dir, name));
        }
        Ok((walk_following_last(parent)?, name))
    }

    /// The directory's path, as it was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory, for messages.
    pub fn join(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// Opens the file `name` in this directory with `flags` (plus `O_NOFOLLOW`, `O_CLOEXEC`,
    /// `O_NONBLOCK` so a planted FIFO cannot block us; `mode` for a file `O_CREAT` makes) and
    /// checks it: a regular file with one link, of a trusted owner, ours in a shared
    /// directory.
    ///
    /// # Errors
    ///
    /// The OS error (`ELOOP` for a symbolic link), or `PermissionDenied` naming the rule.
    pub fn open_file(&self, name: &OsStr, flags: OFlag, mode: u32) -> io::Result<File> {
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let fd = openat(self.fd.as_fd(), name, flags, Mode::from_bits_truncate(mode))
            .map_err(|e| self.link_error(name, e))?;
        let st = fstat(&fd).map_err(io::Error::from)?;
        self.check_file(&st, name)?;
        Ok(File::from(fd))
    }

    /// Turns `ELOOP` from `O_NOFOLLOW` into a message that says what happened.
    fn link_error(&self, name: &OsStr, e: Errno) -> io::Error {
        if e == Errno::ELOOP {
            refused(&self.join(name), "it is a symbolic link")
        } else {
            e.into()
        }
    }

    /// The rules for an existing file `name` with status `st` in this directory.
    pub fn check_file(&self, st: &FileStat, name: &OsStr) -> io::Result<()> {
        let path = self.join(name);
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(refused(&path, "it is not a regular file"));
        }
        if st.st_nlink != 1 {
            return Err(refused(&path, format!("it has {} hard links", st.st_nlink)));
        }
        if !trusted(st.st_uid) {
            return Err(refused(
                &path,
                format!(
                    "the file belongs to {}, not to {}",
                    describe_uid(st.st_uid),
                    trusted_owners()
                ),
            ));
        }
        let euid = nix::unistd::geteuid().as_raw();
        if self.shared && st.st_uid != euid {
            return Err(refused(
                &path,
                format!(
                    "every user may write to its directory, and the file belongs to {}, not \
                     to us",
                    describe_uid(st.st_uid)
                ),
            ));
        }
        Ok(())
    }

    /// The status of `name` without following a link; `None` when it does not exist.
    ///
    /// # Errors
    ///
    /// The OS error other than "not found".
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<FileStat>> {
        match fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The subdirectory `name`, created with `mode` first when missing and `create` is set.
    /// It must not be a symbolic link and passes the directory rules.
    ///
    /// # Errors
    ///
    /// As [`Dir::open`].
    pub fn subdir(&self, name: &OsStr, create: Option<u32>) -> io::Result<Dir> {
        if let Some(mode) = create {
            match mkdirat(self.fd.as_fd(), name, Mode::from_bits_truncate(mode)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let path = self.join(name);
        let fd = openat(
            self.fd.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR if self.is_link(name) => {
                refused(&path, "it is a symbolic link")
            }
            e => e.into(),
        })?;
        let st = fstat(&fd)?;
        let shared = check_dir(&st, &path)?;
        Ok(Dir {
            fd: Arc::new(fd),
            path,
            shared,
        })
    }

    fn is_link(&self, name: &OsStr) -> bool {
        matches!(self.stat(name), Ok(Some(st))
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK)
    }

    /// Removes the file `name`.
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir).map_err(Into::into)
    }

    /// Renames `from` to `to`, both in this directory, replacing `to`.
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        nix::fcntl::renameat(self.fd.as_fd(), from, self.fd.as_fd(), to).map_err(Into::into)
    }

    /// Flushes the directory's entries to disk. A file system that cannot sync a directory
    /// (`EINVAL`) counts as done.
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn sync(&self) -> io::Result<()> {
        match nix::unistd::fsync(self.fd.as_fd()) {
            Ok(()) | Err(Errno::EINVAL) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The names in this directory (without `.` and `..`).
    ///
    /// # Errors
    ///
    /// The OS error.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let fd = openat(
            self.fd.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        Ok(names)
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Opens the directory at `path` (as [`Dir::open`] does) and keeps it open for the life of
/// the process: later [`Dir::open`] calls with the same path use it (see the [module
/// documentation](self)). A path held already keeps its first descriptor.
///
/// # Errors
///
/// As [`Dir::open`].
pub fn hold(path: &Path) -> io::Result<Dir> {
    if let Some(dir) = held(path) {
        return Ok(dir);
    }
    let dir = walk(path)?;
    hold_dir(dir.clone());
    Ok(dir)
}

/// Keeps `dir` for the life of the process, as [`hold`] does, unless its path is held
/// already. (The first descriptor stays: values that hold it, a pidfile or the log, rely on
/// it staying open across daemonizing.)
pub fn hold_dir(dir: Dir) {
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    if !held.iter().any(|d| d.path == dir.path) {
        held.push(dir);
    }
}

/// [`hold`] for the directory of the file at `path`; a missing directory (or a file where a
/// directory should be) is not an error here (`Ok(None)`: whoever writes there later reports
/// it), but a refusal is.
///
/// # Errors
///
/// `PermissionDenied` from [`Dir::open_parent`]: a rule of the [module
/// documentation](self) is broken, or the directory is out of reach.
pub fn hold_parent(path: &Path) -> io::Result<Option<Dir>> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Some(dir) = held(parent) {
        return Ok(Some(dir));
    }
    match walk_following_last(parent) {
        Ok(dir) => {
            hold_dir(dir.clone());
            Ok(Some(dir))
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(e),
        Err(_) => Ok(None),
    }
}

/// The descriptors of the held directories (for a daemonizing step that must keep them).
pub fn held_fds() -> Vec<RawFd> {
    HELD.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|d| d.fd.as_raw_fd())
        .collect()
}

fn held(path: &Path) -> Option<Dir> {
    HELD.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|d| d.path == path)
        .cloned()
}

/// Opens the directory `path`, never following a link in its last component.
fn walk(path: &Path) -> io::Result<Dir> {
    walk_with(path, false)
}

/// Opens the directory `path`, following a trusted link in its last component too (it is
/// the parent of a file, so not the last component of the file's path).
fn walk_following_last(path: &Path) -> io::Result<Dir> {
    walk_with(path, true)
}

fn walk_with(path: &Path, follow_last: bool) -> io::Result<Dir> {
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let start = if path.is_absolute() { "/" } else { "." };
    let mut fd = openat(AT_FDCWD, start, dir_flags, Mode::empty())?;
    let mut at = PathBuf::from(start);
    let mut shared = check_dir(&fstat(&fd)?, &at)?;
    let parts: Vec<Component<'_>> = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let name = part.as_os_str();
        let last = i + 1 == parts.len();
        at.push(name);
        let next = match openat(
            fd.as_fd(),
            name,
            dir_flags | OFlag::O_NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(next) => next,
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let st = fstatat(fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
                if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFLNK {
                    return Err(Errno::ENOTDIR.into());
                }
                if last && !follow_last {
                    return Err(refused(&at, "it is a symbolic link"));
                }
                let euid = nix::unistd::geteuid().as_raw();
                if st.st_uid != 0 && st.st_uid != euid {
                    return Err(refused(
                        &at,
                        format!(
                            "it is a symbolic link of {}; only links of root or of ours are \
                             followed",
                            describe_uid(st.st_uid)
                        ),
                    ));
                }
                openat(fd.as_fd(), name, dir_flags, Mode::empty())?
            }
            Err(e) => return Err(e.into()),
        };
        shared = check_dir(&fstat(&next)?, &at)?;
        fd = next;
    }
    Ok(Dir {
        fd: Arc::new(fd),
        path: path.to_path_buf(),
        shared,
    })
}

/// Fills `buf` from the kernel's random source (`getrandom(2)`, else `/dev/urandom`).
///
/// # Errors
///
/// The OS error when neither source works.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into the live buffer `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n > 0 {
            filled += n as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ENOSYS) => {
                use std::io::Read;
                return File::open("/dev/urandom")?.read_exact(rest);
            }
            _ => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn kind_and_text(e: io::Error) -> (io::ErrorKind, String) {
        (e.kind(), e.to_string())
    }

    #[test]
    fn walks_real_directories_and_trusted_links() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        // Our own link in an earlier component is followed...
        let (dir, name) = Dir::open_parent(&link.join("f")).unwrap();
        assert_eq!(name, "f");
        dir.open_file(&name, OFlag::O_RDWR | OFlag::O_CREAT, 0o600)
            .unwrap();
        assert!(real.join("f").exists());
        // ...but never as the last component.
        let (kind, text) = kind_and_text(walk(&link).unwrap_err());
        assert_eq!(kind, io::ErrorKind::PermissionDenied);
        assert!(
            text.contains("symbolic link") && text.contains("link"),
            "{text}"
        );
        let (kind, text) = kind_and_text(
            Dir::open(tmp.path())
                .unwrap()
                .subdir(OsStr::new("link"), Some(0o755))
                .unwrap_err(),
        );
        assert_eq!(kind, io::ErrorKind::PermissionDenied, "{text}");
    }

    #[test]
    fn files_must_be_plain_single_links() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        fs::write(tmp.path().join("victim"), "x").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("victim"), tmp.path().join("sym")).unwrap();
        let text = dir
            .open_file(OsStr::new("sym"), OFlag::O_WRONLY | OFlag::O_APPEND, 0o600)
            .unwrap_err()
            .to_string();
        assert!(text.contains("symbolic link"), "{text}");
        fs::hard_link(tmp.path().join("victim"), tmp.path().join("hard")).unwrap();
        let text = dir
            .open_file(OsStr::new("hard"), OFlag::O_WRONLY, 0o600)
            .unwrap_err()
            .to_string();
        assert!(text.contains("2 hard links"), "{text}");
        fs::create_dir(tmp.path().join("sub")).unwrap();
        let text = dir
            .open_file(OsStr::new("sub"), OFlag::O_RDONLY, 0o600)
            .unwrap_err()
            .to_string();
        assert!(text.contains("not a regular file"), "{text}");
        nix::unistd::mkfifo(&tmp.path().join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        // O_NONBLOCK: a planted FIFO is refused at once instead of blocking the open.
        let text = dir
            .open_file(OsStr::new("fifo"), OFlag::O_RDONLY, 0o600)
            .unwrap_err()
            .to_string();
        assert!(text.contains("not a regular file"), "{text}");
    }

    #[test]
    fn world_writable_directories_must_be_sticky_and_hold_our_files() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let text = walk(&open).unwrap_err().to_string();
        assert!(
            text.contains("not sticky") && text.contains("0777"),
            "{text}"
        );
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        let dir = walk(&open).unwrap();
        assert!(dir.shared);
        dir.open_file(OsStr::new("mine"), OFlag::O_RDWR | OFlag::O_CREAT, 0o600)
            .unwrap();
    }

    #[test]
    fn foreign_owners_are_refused_when_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to give files away");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let foreign = tmp.path().join("foreign");
        fs::create_dir(&foreign).unwrap();
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(&foreign, Some(nobody), None).unwrap();
        let text = walk(&foreign).unwrap_err().to_string();
        assert!(text.contains("belongs to uid 65534"), "{text}");
        let f = tmp.path().join("f");
        fs::write(&f, "").unwrap();
        nix::unistd::chown(&f, Some(nobody), None).unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let text = dir
            .open_file(OsStr::new("f"), OFlag::O_WRONLY, 0)
            .unwrap_err()
            .to_string();
        assert!(text.contains("the file belongs to uid 65534"), "{text}");
    }

    #[test]
    fn held_directories_are_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let sub = tmp.path().join("held");
        fs::create_dir(&sub).unwrap();
        let dir = hold(&sub).unwrap();
        assert!(held_fds().contains(&dir.fd.as_raw_fd()));
        // Renamed away: the held descriptor still names the directory checked at start.
        fs::rename(&sub, tmp.path().join("moved")).unwrap();
        let again = Dir::open(&sub).unwrap();
        again
            .open_file(OsStr::new("x"), OFlag::O_RDWR | OFlag::O_CREAT, 0o600)
            .unwrap();
        assert!(tmp.path().join("moved/x").exists());
        assert!(hold_parent(&tmp.path().join("missing/x"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn random_bytes_differ() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        random_bytes(&mut a).unwrap();
        random_bytes(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
