//! Atomic file replacement: a reader sees the old document or the new one, never half of either.
//!
//! [`write_atomic`] writes the bytes into a new temporary file in the target's own directory
//! (a rename is only atomic within one file system), flushes it to disk, renames it over the
//! target and then flushes the directory, so the rename itself survives a crash. If any step
//! fails, the temporary file is removed and the old target is left as it was; the error names
//! the target.
//!
//! The runlog, state and persistent-state files all go through here (pyzenkit wrote them in
//! place, so a signal or a full disk could leave half a JSON document behind).
//!
//! Everything happens relative to the directory's descriptor, opened under the
//! [ownership rules](crate::safepath) (or held open from before the privilege drop). A
//! symbolic link at the target is replaced by the new file, not followed; an existing target
//! owned by another user is refused.
//!
//! # Temporary files
//!
//! * Names are unpredictable: `.<name>.<pid>.<16 random hex digits>.tmp`, the random part from
//!   the kernel (`getrandom(2)`). Another user who plants names in a shared directory cannot
//!   guess ours; a collision (`EEXIST`) is retried with new random digits, never fatal.
//! * They are created with `O_EXCL | O_NOFOLLOW | O_CLOEXEC`, so nothing planted is reused
//!   or followed, and no program the daemon starts inherits one.
//! * A process killed in the middle of a write (the stop watchdog, `SIGKILL`, a crash) leaves
//!   its temporary file behind; [`remove_stale_temporaries`] removes those of dead processes,
//!   and the daemon calls it at every start.
//!
//! # Modes
//!
//! The new file keeps the permission bits (and, when we are root, the owner and group) of the
//! file it replaces, set explicitly so the umask cannot widen or narrow them. A new file gets
//! the caller's mode: 0600 for the state and persistent state files (they may hold what
//! components keep private), 0644 for runlogs ([`DEFAULT_MODE`]).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::kill;
use nix::sys::stat::{fchmod, Mode, SFlag};
use nix::unistd::{fchown, Gid, Pid, Uid};

use crate::error::{Error, Result};
use crate::safepath::{self, Dir};

/// The permission bits a new file gets from [`write_atomic`] (before the process umask).
pub const DEFAULT_MODE: u32 = 0o644;

/// The permission bits of new state and persistent state files.
pub const PRIVATE_MODE: u32 = 0o600;

/// How many random names to try before giving up on creating the temporary file.
const TEMP_ATTEMPTS: u32 = 64;

/// Longest file name we build for a temporary file; Linux's `NAME_MAX` is 255 bytes.
const MAX_NAME: usize = 255;

/// Random bytes in a temporary name (16 hex digits).
const RANDOM_BYTES: usize = 8;

/// Replaces the file at `path` with `bytes`, atomically; a new file gets mode
/// [`DEFAULT_MODE`].
///
/// # Errors
///
/// [`Error::Io`] naming `path` when the directory is missing, not writable or refused by the
/// [ownership rules](crate::safepath), the target is refused (another user's file, a
/// directory), the disk is full, or a sync fails. The old file is then untouched and no
/// temporary file is left behind (one exception: if only the final directory sync fails, the
/// new content is already in place).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, DEFAULT_MODE)
}

/// Like [`write_atomic`], with the permission bits for a new file (the process umask
/// applies); an existing file's mode is kept.
///
/// # Errors
///
/// As [`write_atomic`].
pub fn write_atomic_mode(path: impl AsRef<Path>, bytes: &[u8], mode: u32) -> Result<()> {
    let path = path.as_ref();
    let (dir, name) = Dir::open_parent(path).map_err(|e| Error::io("write", path, e))?;
    write_in(&dir, &name, bytes, mode)
}

/// [`write_atomic_mode`] for the file `name` in `dir`.
///
/// # Errors
///
/// As [`write_atomic`].
pub fn write_in(dir: &Dir, name: &OsStr, bytes: &[u8], mode: u32) -> Result<()> {
    let path = dir.join(name);
    let keep = existing(dir, name).map_err(|e| Error::io("replace", &path, e))?;

    let (temp_name, mut file) = create_temp(dir, name, mode)
        .map_err(|e| Error::io("create a temporary file for", &path, e))?;
    let mut temp = TempGuard {
        dir,
        name: Some(temp_name),
    };
    if let Some(st) = keep {
        keep_attributes(&file, &st)
            .map_err(|e| Error::io("keep the mode and owner of", &path, e))?;
    }
    file.write_all(bytes)
        .map_err(|e| Error::io("write", &path, e))?;
    file.sync_all().map_err(|e| Error::io("sync", &path, e))?;
    drop(file);

    let temp_name = temp
        .name
        .as_deref()
        .expect("the guard holds the name until disarmed");
    dir.rename(temp_name, name)
        .map_err(|e| Error::io("replace", &path, e))?;
    temp.name = None;

    dir.sync()
        .map_err(|e| Error::io("sync the directory of", &path, e))
}

/// The status of the regular file being replaced (checked: a trusted owner), `None` for a
/// new file or a symbolic link (which the rename replaces).
fn existing(dir: &Dir, name: &OsStr) -> io::Result<Option<nix::sys::stat::FileStat>> {
    match dir.stat(name)? {
        Some(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG => {
            dir.check_file(&st, name)?;
            Ok(Some(st))
        }
        _ => Ok(None),
    }
}

/// Gives the new file the mode, and as root the owner and group, of the replaced one.
fn keep_attributes(file: &File, st: &nix::sys::stat::FileStat) -> io::Result<()> {
    if nix::unistd::geteuid().is_root() {
        fchown(
            file,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        )?;
    }
    fchmod(file, Mode::from_bits_truncate(st.st_mode & 0o777))?;
    Ok(())
}

/// A fresh temporary name for `name`: `.<name>.<pid>.<random hex>.tmp`, within `NAME_MAX`.
fn temp_name(name: &OsStr) -> io::Result<OsString> {
    let mut random = [0u8; RANDOM_BYTES];
    safepath::random_bytes(&mut random)?;
    let mut suffix = format!(".{}.", std::process::id());
    for b in random {
        suffix.push_str(&format!("{b:02x}"));
    }
    suffix.push_str(".tmp");
    // Keep the whole name within NAME_MAX, shortening the target's part if it is long.
    let room = MAX_NAME - 1 - suffix.len();
    let base = &name.as_bytes()[..name.len().min(room)];
    let mut temp = Vec::with_capacity(1 + base.len() + suffix.len());
    temp.push(b'.');
    temp.extend_from_slice(base);
    temp.extend_from_slice(suffix.as_bytes());
    Ok(OsString::from_vec(temp))
}

/// Creates a new temporary file for `name` in `dir` (exclusively, no link followed,
/// close-on-exec); a name that exists already is retried with new random digits.
fn create_temp(dir: &Dir, name: &OsStr, mode: u32) -> io::Result<(OsString, File)> {
    let mut last_error = None;
    for _ in 0..TEMP_ATTEMPTS {
        let temp = temp_name(name)?;
        match dir.open_file(
            &temp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            mode,
        ) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary name")))
}

/// The target name and PID of a temporary file name `.<target>.<pid>.<hex>.tmp`. The
/// random part may also be the decimal counter of older versions.
fn parse_temp(name: &[u8]) -> Option<(&[u8], i32)> {
    let inner = name.strip_prefix(b".")?.strip_suffix(b".tmp")?;
    let (rest, random) = split_last_dot(inner)?;
    let (target, pid) = split_last_dot(rest)?;
    let hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if random.is_empty() || !random.iter().all(hex) || target.is_empty() {
        return None;
    }
    if pid.is_empty() || !pid.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let pid = std::str::from_utf8(pid).ok()?.parse::<i32>().ok()?;
    (pid > 0).then_some((target, pid))
}

fn split_last_dot(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().rposition(|&b| b == b'.')?;
    Some((&s[..i], &s[i + 1..]))
}

/// Whether the process `pid` is gone (so its temporary files are stale). Our own PID counts
/// as gone: a previous holder of it is dead, and we write nothing yet.
fn is_gone(pid: i32) -> bool {
    pid == std::process::id() as i32 || kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH)
}

/// Removes the temporary files that [`write_atomic`] left in `dir` for targets that
/// `is_ours` accepts, when the process that wrote them is gone and the file is ours (a
/// regular file of the effective user). Returns the names removed.
///
/// # Errors
///
/// The OS error when the directory cannot be listed; files that cannot be removed are
/// skipped.
pub fn remove_stale_temporaries(
    dir: &Dir,
    is_ours: impl Fn(&[u8]) -> bool,
) -> io::Result<Vec<OsString>> {
    let euid = nix::unistd::geteuid().as_raw();
    let mut removed = Vec::new();
    for name in dir.names()? {
        let Some((target, pid)) = parse_temp(name.as_bytes()) else {
            continue;
        };
        if !is_ours(target) || !is_gone(pid) {
            continue;
        }
        let plain = matches!(dir.stat(&name), Ok(Some(st))
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
                && st.st_uid == euid);
        if plain && dir.unlink(&name).is_ok() {
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Removes the temporary file unless the rename consumed it.
struct TempGuard<'a> {
    dir: &'a Dir,
    name: Option<OsString>,
}

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = self.dir.unlink(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::Ordering;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The process umask, read without changing it (other test threads create files).
    fn current_umask() -> u32 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    #[test]
    fn creates_a_new_file_with_mode_0644() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"{}\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, DEFAULT_MODE & !current_umask());
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn replaces_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runlog.json");
        fs::write(&path, b"old content that is longer than the new one").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        write_atomic(&path, b"").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert_eq!(names(dir.path()), ["runlog.json"]);
    }

    #[test]
    fn paths_that_name_no_file_are_refused() {
        for bad in ["/", "/a/b/"] {
            let err = write_atomic(bad, b"x").unwrap_err();
            assert!(err.to_string().contains("does not name a file"), "{err}");
        }
    }

    #[test]
    fn the_mode_of_the_replaced_file_is_kept_and_new_files_get_the_given_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomic_mode(&path, b"1", PRIVATE_MODE).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), PRIVATE_MODE & !current_umask());
        // A 0600 file stays 0600 when rewritten with the default (0644) mode...
        write_atomic(&path, b"2").unwrap();
        assert_eq!(mode(&path), PRIVATE_MODE & !current_umask());
        // ...and an operator's 0640 stays 0640, whatever the umask says.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic_mode(&path, b"3", PRIVATE_MODE).unwrap();
        assert_eq!(mode(&path), 0o640);
        assert_eq!(fs::read(&path).unwrap(), b"3");
    }

    #[test]
    fn temporary_names_are_unpredictable_and_parse_back() {
        let a = temp_name(OsStr::new("d.state")).unwrap();
        let b = temp_name(OsStr::new("d.state")).unwrap();
        assert_ne!(a, b);
        let (target, pid) = parse_temp(a.as_bytes()).unwrap();
        assert_eq!((target, pid), (&b"d.state"[..], std::process::id() as i32));
        assert_eq!(
            a.len(),
            ".d.state.".len() + pid.to_string().len() + 1 + 16 + 4
        );
        // The old counter form parses too; other names do not.
        assert_eq!(
            parse_temp(b".x.pstate.12.3.tmp"),
            Some((&b"x.pstate"[..], 12))
        );
        for other in [
            &b"x.tmp"[..],
            b".x.12.tmp",
            b".x.a.ff.tmp",
            b".x.0.ff.tmp",
            b"..1.f.tmp",
        ] {
            assert_eq!(
                parse_temp(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A PID that cannot exist (above the kernel's pid_max limit).
        let dead = ".d.state.99999999.00112233aabbccdd.tmp";
        let alive = format!(".d.state.1.{}.tmp", "ab".repeat(8)); // init never dies
        let mine = format!(".d.state.{}.ff.tmp", std::process::id());
        for name in [dead, &alive, &mine, ".other.99999999.ff.tmp", "d.state"] {
            fs::write(dir.path().join(name), "partial").unwrap();
        }
        let d = Dir::open(dir.path()).unwrap();
        let mut removed = remove_stale_temporaries(&d, |t| t == b"d.state").unwrap();
        removed.sort();
        let mut expected = [OsString::from(dead), OsString::from(&mine)];
        expected.sort();
        assert_eq!(removed, expected);
        let mut left = names(dir.path());
        left.sort();
        assert_eq!(left, [alive.as_str(), ".other.99999999.ff.tmp", "d.state"]);
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("state");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(!fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn a_long_name_still_fits_name_max() {
        let dir = tempfile::tempdir().unwrap();
        let name = "n".repeat(250);
        let path = dir.path().join(&name);
        write_atomic(&path, b"x").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"x");
        assert_eq!(names(dir.path()), [name]);
    }

    #[test]
    fn missing_directory_gives_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("state.json");
        let err = write_atomic(&path, b"x").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
        assert!(msg.contains("No such file or directory"), "{msg}");
        match err {
            Error::Io { source, .. } => assert_eq!(source.kind(), io::ErrorKind::NotFound),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn failed_rename_removes_the_temporary_file_and_keeps_the_target() {
        // A non-empty directory at the target: the temporary file is written, the rename fails.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"keep").unwrap();
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(err.to_string().starts_with("cannot replace '"), "{err}");
        assert_eq!(names(dir.path()), ["target"]);
        assert_eq!(fs::read(path.join("inside")).unwrap(), b"keep");
    }

    #[test]
    fn read_only_directory_keeps_the_old_file() {
        if nix::unistd::geteuid().is_root() {
            // root ignores permission bits; the failed-rename test covers the cleanup path.
            eprintln!("skipped: running as root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).unwrap();
        let err = write_atomic(&path, b"new").unwrap_err();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(err.to_string().contains("Permission denied"), "{err}");
        assert_eq!(err.exit_code(), crate::error::exit::NO_PERMISSION);
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn a_reader_never_sees_half_a_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc");
        let a = vec![b'a'; 64 * 1024];
        let b = vec![b'b'; 96 * 1024];
        write_atomic(&path, &a).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (path, done, a, b) = (path.clone(), done.clone(), a.clone(), b.clone());
            std::thread::spawn(move || {
                let mut reads = 0u32;
                while !done.load(Ordering::Relaxed) || reads == 0 {
                    let got = fs::read(&path).unwrap();
                    assert!(got == a || got == b, "torn read of {} bytes", got.len());
                    reads += 1;
                }
            })
        };
        for i in 0..50 {
            write_atomic(&path, if i % 2 == 0 { &b } else { &a }).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        assert_eq!(names(dir.path()), ["doc"]);
    }
}
