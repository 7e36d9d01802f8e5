//! File names of parallel instances (`--parallel`): the PID goes into the name.
//!
//! In parallel mode each instance has its own pidfile and state file, named after the
//! configured one with the instance's PID before the extension: `/run/d/d.pid` becomes
//! `/run/d/d.4242.pid`, `d.state` becomes `d.4242.state`; a name without an extension gets
//! the PID appended (`d` → `d.4242`). The PID is the daemon's own (after the last fork), so
//! the name and the content of a pidfile agree (pyzenkit named it after the launcher's PID).
//!
//! The control actions find the instances by listing the configured file's directory for
//! exactly that pattern: the same stem and extension, a PID of decimal digits between. Other
//! daemons' files that merely share a prefix (`d-other.1.pid`) do not match (pyzenkit's glob
//! `d*.pid` caught them).
//!
//! Runlog files carry the PID in their names anyway, and the persistent state file is shared
//! (it is keyed by component, and the last instance to stop writes it).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Splits a file name into stem and extension at its last dot (a leading dot is no
/// extension separator).
fn split(name: &str) -> (&str, Option<&str>) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    }
}

/// The path of instance `pid` of the file `base` (see the [module documentation](self)).
pub fn instance_path(base: &Path, pid: u32) -> PathBuf {
    let name = base
        .file_name()
        .map(OsStr::to_string_lossy)
        .unwrap_or_default();
    let file = match split(&name) {
        (stem, Some(ext)) => format!("{stem}.{pid}.{ext}"),
        (stem, None) => format!("{stem}.{pid}"),
    };
    base.with_file_name(file)
}

/// The PID in `file_name` if it names an instance of `base_name`.
pub(crate) fn instance_pid(base_name: &str, file_name: &str) -> Option<u32> {
    let (stem, ext) = split(base_name);
    let rest = file_name.strip_prefix(stem)?.strip_prefix('.')?;
    let digits = match ext {
        Some(ext) => rest.strip_suffix(ext)?.strip_suffix('.')?,
        None => rest,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&pid| pid > 0)
}

/// The instance files of `base` that exist, with their PIDs, in PID order. A missing
/// directory has none.
///
/// # Errors
///
/// [`Error::Io`] naming the directory when it exists but cannot be read.
pub fn instance_paths(base: &Path) -> Result<Vec<(PathBuf, u32)>> {
    let dir = match base.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let base_name = base
        .file_name()
        .map(OsStr::to_string_lossy)
        .unwrap_or_default();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list instances in", dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list instances in", dir, e))?;
        let name = entry.file_name();
        if let Some(pid) = name.to_str().and_then(|n| instance_pid(&base_name, n)) {
            found.push((entry.path(), pid));
        }
    }
    found.sort_by_key(|&(_, pid)| pid);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_pid_before_the_extension() {
        assert_eq!(
            instance_path(Path::new("/run/d/d.pid"), 42),
            Path::new("/run/d/d.42.pid")
        );
        assert_eq!(
            instance_path(Path::new("x/d.v1.state"), 7),
            Path::new("x/d.v1.7.state")
        );
        assert_eq!(instance_path(Path::new("/r/d"), 7), Path::new("/r/d.7"));
        assert_eq!(instance_path(Path::new("/r/.d"), 7), Path::new("/r/.d.7"));
    }

    #[test]
    fn only_exact_instances_match() {
        assert_eq!(instance_pid("d.pid", "d.42.pid"), Some(42));
        assert_eq!(instance_pid("d.pid", "d.pid"), None);
        assert_eq!(instance_pid("d.pid", "d-other.42.pid"), None);
        assert_eq!(instance_pid("d.pid", "d.x42.pid"), None);
        assert_eq!(instance_pid("d.pid", "d.42.pid.tmp"), None);
        assert_eq!(instance_pid("d.pid", "d.0.pid"), None);
        assert_eq!(instance_pid("d", "d.9"), Some(9));
        assert_eq!(instance_pid("d.pid", "d..pid"), None);
    }

    #[test]
    fn listing_finds_instances_in_pid_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["d.300.pid", "d.20.pid", "d.pid", "dx.5.pid", "d.7.state"] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        let found = instance_paths(&dir.path().join("d.pid")).unwrap();
        let pids: Vec<u32> = found.iter().map(|&(_, p)| p).collect();
        assert_eq!(pids, [20, 300]);
        assert_eq!(found[0].0, dir.path().join("d.20.pid"));
        assert!(instance_paths(&dir.path().join("none/d.pid"))
            .unwrap()
            .is_empty());
    }
}
