//! The persistent state file (pstate): what components keep from one run to the next.
//!
//! One JSON object keyed by component name (pyzenkit kept one free-form dictionary). It is
//! read once at start, before forking, and each [`Service`](crate::service::Service) gets its
//! own entry back. It is written atomically and durably (never half) at every checkpoint: right
//! after the start, every `pstate_interval`, when a component asks for one, and at the end of
//! a run that stopped through the event loop (see [`Daemon`](crate::daemon::Daemon) and
//! [`checkpoint`](crate::checkpoint)).
//!
//! Entries of components that give nothing to save, and of components this daemon does not
//! have (any more), are kept as they were: one component's upgrade or removal does not erase
//! another's state.
//!
//! A missing file is an empty state. A file that is not a JSON object is an error
//! ([`Error::Data`], exit code 65): starting over from nothing would silently lose the state,
//! so the operator decides (fix or remove the file). Whole lines starting with `#` or `//` are
//! comments, as in configuration files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::atomic::{write_atomic_mode, PRIVATE_MODE};
use crate::config::parse_json_conf;
use crate::error::{Error, Result};

/// The persistent state: the file's object, as read, with the entries set since.
#[derive(Debug, Clone, PartialEq)]
pub struct Pstate {
    path: PathBuf,
    entries: Map<String, Value>,
    /// Whether the file existed or an entry was set: only then is there anything to write.
    dirty: bool,
}

impl Pstate {
    /// Reads the persistent state file at `path`; a missing file is an empty state.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file exists but cannot be read; [`Error::Data`] naming it when
    /// it is not a JSON object.
    pub fn load(path: impl Into<PathBuf>) -> Result<Pstate> {
        let path = path.into();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Pstate {
                    path,
                    entries: Map::new(),
                    dirty: false,
                })
            }
            Err(e) => return Err(Error::io("read persistent state file", &path, e)),
        };
        let entries = parse_json_conf(&text, &path.display().to_string()).map_err(|e| {
            let message = match e {
                Error::Config { message, .. } => message,
                other => other.to_string(),
            };
            Error::data("persistent state file", &path, message)
        })?;
        Ok(Pstate {
            path,
            entries,
            dirty: true,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the file to `path`: [`save`](Self::save) writes there (everything held).
    pub fn set_path(&mut self, path: impl Into<PathBuf>) {
        self.path = path.into();
        self.dirty = true;
    }

    /// The entry of component `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries.get(name)
    }

    /// Replaces the entry of component `name`.
    pub fn set(&mut self, name: &str, value: Value) {
        self.entries.insert(name.to_owned(), value);
        self.dirty = true;
    }

    /// The whole object.
    pub fn entries(&self) -> &Map<String, Value> {
        &self.entries
    }

    /// Writes the file atomically (pretty JSON, sorted keys), unless there is nothing to
    /// write: no file was read and no entry set.
    ///
    /// # Errors
    ///
    /// As [`write_atomic_mode`]; the old file is then untouched.
    pub fn save(&self) -> Result<()> {
        match self.to_bytes() {
            // 0600 for a new file: components may keep what others must not read.
            Some(bytes) => write_atomic_mode(&self.path, &bytes, PRIVATE_MODE),
            None => Ok(()),
        }
    }

    /// The file's content as [`save`](Self::save) writes it (pretty JSON, sorted keys), or
    /// `None` when there is nothing to write.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        if !self.dirty {
            return None;
        }
        let mut v = Value::Object(self.entries.clone());
        v.sort_all_objects();
        let mut bytes = serde_json::to_vec_pretty(&v).unwrap_or_default();
        bytes.push(b'\n');
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit;
    use serde_json::json;

    #[test]
    fn missing_file_is_empty_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pstate");
        let p = Pstate::load(&path).unwrap();
        assert!(p.entries().is_empty());
        p.save().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn round_trip_keeps_other_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pstate");
        fs::write(
            &path,
            "# saved by d\n{\"gone\": {\"x\": 1}, \"worker\": {\"runs\": 1}}\n",
        )
        .unwrap();
        let mut p = Pstate::load(&path).unwrap();
        assert_eq!(p.get("worker"), Some(&json!({"runs": 1})));
        p.set("worker", json!({"runs": 2}));
        p.save().unwrap();
        let back: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, json!({"gone": {"x": 1}, "worker": {"runs": 2}}));
    }

    #[test]
    fn a_new_entry_creates_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pstate");
        let mut p = Pstate::load(&path).unwrap();
        p.set("w", json!(3));
        p.save().unwrap();
        assert_eq!(Pstate::load(&path).unwrap().get("w"), Some(&json!(3)));
    }

    #[test]
    fn malformed_file_is_a_data_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pstate");
        fs::write(&path, "{\"a\": ").unwrap();
        let e = Pstate::load(&path).unwrap_err();
        assert_eq!(e.exit_code(), exit::DATA);
        assert!(e.to_string().contains("d.pstate"), "{e}");
        fs::write(&path, "[1, 2]").unwrap();
        assert_eq!(Pstate::load(&path).unwrap_err().exit_code(), exit::DATA);
    }
}
