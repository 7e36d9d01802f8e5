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
//! A symbolic link at the target is replaced by the new file, not followed.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// The permission bits a new file gets from [`write_atomic`] (before the process umask).
pub const DEFAULT_MODE: u32 = 0o644;

/// How many unique names to try before giving up on creating the temporary file.
const TEMP_ATTEMPTS: u32 = 64;

/// Longest file name we build for a temporary file; Linux's `NAME_MAX` is 255 bytes.
const MAX_NAME: usize = 255;

/// Replaces the file at `path` with `bytes`, atomically, with mode [`DEFAULT_MODE`].
///
/// # Errors
///
/// [`Error::Io`] naming `path` when the directory is missing or not writable, the disk is
/// full, the target is a directory, or a sync fails. The old file is then untouched and no
/// temporary file is left behind (one exception: if only the final directory sync fails, the
/// new content is already in place).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, DEFAULT_MODE)
}

/// Like [`write_atomic`], with the permission bits for the new file (the process umask applies).
///
/// # Errors
///
/// As [`write_atomic`].
pub fn write_atomic_mode(path: impl AsRef<Path>, bytes: &[u8], mode: u32) -> Result<()> {
    let path = path.as_ref();
    let (dir, name) = split(path)?;

    let (temp_path, mut file) = create_temp(&dir, &name, mode)
        .map_err(|e| Error::io("create a temporary file for", path, e))?;
    let mut temp = TempGuard(Some(temp_path));

    file.write_all(bytes)
        .map_err(|e| Error::io("write", path, e))?;
    file.sync_all().map_err(|e| Error::io("sync", path, e))?;
    drop(file);

    let temp_path = temp
        .0
        .as_deref()
        .expect("the guard holds the path until disarmed");
    fs::rename(temp_path, path).map_err(|e| Error::io("replace", path, e))?;
    temp.disarm();

    sync_dir(&dir).map_err(|e| Error::io("sync the directory of", path, e))
}

/// The directory to create the temporary file in, and the target's file name.
fn split(path: &Path) -> Result<(PathBuf, OsString)> {
    let name = match path.file_name() {
        Some(name) if !path.as_os_str().as_bytes().ends_with(b"/") => name.to_os_string(),
        _ => {
            return Err(Error::io(
                "write",
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file"),
            ))
        }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// Creates a new file `.<name>.<pid>.<n>.tmp` in `dir` (exclusively, close-on-exec).
fn create_temp(dir: &Path, name: &OsString, mode: u32) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let mut last_error = None;
    for _ in 0..TEMP_ATTEMPTS {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let suffix = format!(".{pid}.{n}.tmp");
        // Keep the whole name within NAME_MAX, shortening the target's part if it is long.
        let room = MAX_NAME - 1 - suffix.len();
        let base = &name.as_bytes()[..name.len().min(room)];
        let mut temp_name = Vec::with_capacity(1 + base.len() + suffix.len());
        temp_name.push(b'.');
        temp_name.extend_from_slice(base);
        temp_name.extend_from_slice(suffix.as_bytes());
        let temp_path = dir.join(OsString::from_vec(temp_name));

        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(&temp_path)
        {
            Ok(file) => return Ok((temp_path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free temporary name")))
}

/// Flushes a directory's entries (the rename) to disk.
fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = File::open(dir)?;
    match dir.sync_all() {
        // Some file systems cannot sync a directory; the rename is then as durable as it gets.
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => Ok(()),
        other => other,
    }
}

/// Removes the temporary file unless the rename consumed it.
struct TempGuard(Option<PathBuf>);

impl TempGuard {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
    fn relative_path_without_directory_uses_the_current_one() {
        assert_eq!(
            split(Path::new("x.json")).unwrap(),
            (PathBuf::from("."), OsString::from("x.json"))
        );
        assert_eq!(
            split(Path::new("/a/b.json")).unwrap(),
            (PathBuf::from("/a"), OsString::from("b.json"))
        );
        assert!(split(Path::new("/")).is_err());
        assert!(split(Path::new("/a/b/")).is_err());
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
