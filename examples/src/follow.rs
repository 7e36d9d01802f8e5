//! [`Follower`]: a component that follows text files like `tail -F` and turns every line into
//! an event for the components after it.
//!
//! # What it does
//!
//! Every `poll_ms` milliseconds it looks at each configured path and reads what was appended
//! since its last look. Each complete line (the bytes up to a `\n`, without it) becomes a
//! [`Line`] inside the daemon's own event type ([`FollowEvents::line`]), scheduled on the
//! sequential queue: the components that handle that kind (a counter, a forwarder…) see the
//! lines in file order.
//!
//! * **Partial lines** wait: bytes after the last `\n` are read again at the next look, until
//!   the line is complete. Nothing is buffered between looks; the file is the buffer.
//! * **Rotation by rename** (logrotate's default, `mv app.log app.log.1; touch app.log`): when
//!   the path names another file (device and inode differ), the follower first reads the old
//!   file to its end through the descriptor it holds, emits a last partial line there as a line
//!   (nobody will complete it), then follows the new file from its start. While nothing is at
//!   the path, it keeps reading the old file.
//! * **Truncation** (logrotate's `copytruncate`): a file shorter than the read position was
//!   truncated; the follower reads it again from the start.
//! * **Files that are missing** are waited for, and read from their start once they appear.
//! * **Long lines**: a line longer than `max_line` bytes is one line, cut: its first
//!   `max_line` bytes are emitted (patterns see those) once its end is there, the rest is
//!   skipped, and the `split` counter counts it. Memory stays bounded.
//! * **Unreadable files** (permission denied) are waited for and logged once per change
//!   (unreadable, readable again). With `start_at: "end"`, where to begin is decided at the
//!   first look (the size then), so lines written until the file can be read are not skipped.
//!
//! # Positions, and restarts that neither skip nor repeat
//!
//! The follower keeps, per file, the position up to which the pipeline has *handled* lines:
//! its own handler of the line kind is put first in that pipeline ([`Routes::prepend`]) and
//! moves the position to each line's end as it passes. A pipeline runs whole (signals only
//! set flags between events), so a line is either handled by every component or by none. At
//! every checkpoint of the shell (right after `start`, every `pstate_interval`, and at the end
//! of the run, all between two events; [`Service::persist`]) the handled positions, with the
//! device and inode of each file, go to the persistent state file, in the same atomic write
//! as the state of the components after the follower (the counts of a
//! [`LineCounter`](crate::LineCounter)), which have handled exactly the lines up to those
//! positions. The
//! next start, after a clean stop or a crash alike, resumes each file there:
//! lines that were read but not handled yet when the run ended are read again, lines that were
//! handled are not. If the file at the path is another one by then (rotated while the daemon
//! was down), the follower looks for the saved file beside it under its rotated names
//! (`<name>.*`, `<name>-*` and the `rotated` patterns) by device and inode, reads the rest of
//! it first, then the new file from its start; if it is not found, the new file is read from
//! its start. A file shorter than the saved position (truncated) is read from its start too,
//! and so is a new file that got the old one's inode: each position carries a fingerprint of
//! the file's first bytes (up to [`FINGERPRINT_BYTES`]), which must match.
//!
//! On the first start (no saved position) `start_at` decides: `"end"` (the default) skips
//! what the file already holds, up to its last complete line, as `tail -F -n 0` does;
//! `"beginning"` reads it all.
//!
//! # Back-pressure
//!
//! One look emits at most `batch` lines in all (files take turns at going first). When there
//! is more to read, the next look is scheduled on the sequential queue, behind the lines just
//! emitted, instead of after `poll_ms`: a backlog drains as fast as the pipeline handles it,
//! and the queue holds at most about one batch of lines. When the queue is full, the line it
//! hands back is dropped and read again later, and the next look waits until the lines in
//! flight are handled (counter `queue_full`). Nothing is lost either way.
//!
//! # Allocation
//!
//! Line texts live in buffers that return to a pool when their event is dropped, so the
//! steady state allocates nothing per line (the pool keeps up to [`POOL_BUFFERS`] buffers of
//! up to [`POOL_BUFFER_BYTES`] each). Looking at a file costs two `stat` calls and a `pread`.
//!
//! # Configuration
//!
//! The section under the key given to [`Follower::new`] ([`FollowSettings`]):
//!
//! ```json
//! "tail": {
//!     "files": ["/var/log/syslog", "app.log"],
//!     "poll_ms": 200,
//!     "start_at": "end",
//!     "max_line": 65536,
//!     "batch": 512,
//!     "rotated": ["archive-*.log"]
//! }
//! ```
//!
//! Relative paths are taken from the directory the daemon was started in. A reload applies a
//! new section at once; files that stay keep their position, new ones start as a missing file
//! that appeared (from their start, unless a saved position exists).
//!
//! # Statistics, state, persistent state
//!
//! Counters: `lines` and `bytes` emitted, `rotations`, `truncations`, `split` (pieces of long
//! lines), `queue_full` (lines handed back by a full queue). The state dump has, per file,
//! `<path>:open`, `<path>:device`, `<path>:inode`, `<path>:offset` (read position),
//! `<path>:handled` (handled position) and `<path>:in_flight` (lines emitted, not handled
//! yet). The persistent state is
//! `{"files": {"<path>": {"dev": …, "ino": …, "offset": …, "fingerprint": …}}}`.
//!
//! # Limitations
//!
//! Polling, not inotify: a line is seen up to `poll_ms` after it was written. A truncated file
//! that grew past the old position before the next look is not recognised as truncated (as
//! with every polling `tail -F`). A killed daemon (`SIGKILL`, a crash) resumes from its last
//! checkpoint: the lines handled since are handled again (at most one `pstate_interval` of
//! them), and the counters saved with the positions go back with them, so counts stay exact.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::marker::PhantomData;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zendaemon::core::{
    Component, Context, CounterId, CounterSet, Counters, Event, Flow, Kind, RouteError, Routes,
    StateValue, StateVisitor, TimerHandle, UserEvent,
};
use zendaemon::{Config, Error, Service, StdClock};

/// At most this many line buffers wait in the pool.
pub const POOL_BUFFERS: usize = 4096;
/// Buffers larger than this go back to the allocator instead of the pool.
pub const POOL_BUFFER_BYTES: usize = 4096;

/// The daemon's event type, as the follower needs it: a poll event and a line event, each of
/// its own kind.
///
/// # Contract
///
/// * `U::kind(&U::poll())` MUST be [`POLL_KIND`](Self::POLL_KIND) and
///   `U::kind(&U::line(_))` MUST be [`LINE_KIND`](Self::LINE_KIND); the two differ.
/// * [`as_line`](Self::as_line) MUST return the line of every value made by
///   [`line`](Self::line), and `None` for every other value.
///
/// [`FollowEvent`] implements it for a daemon whose only events are these; a daemon with
/// events of its own wraps them in its enum and implements this trait on it.
pub trait FollowEvents: UserEvent + Clone + Sized {
    /// The user kind of the poll event.
    const POLL_KIND: usize;
    /// The user kind of line events.
    const LINE_KIND: usize;
    /// The poll event (the follower schedules it for itself).
    fn poll() -> Self;
    /// A line event.
    fn line(line: Line) -> Self;
    /// The line inside a line event.
    fn as_line(&self) -> Option<&Line>;
}

/// The follower's events, for a daemon that has no others: [`Follower`] plus components that
/// handle lines.
#[derive(Debug, Clone)]
pub enum FollowEvent {
    /// Time to look at the files.
    Poll,
    /// A line was read.
    Line(Line),
}

impl UserEvent for FollowEvent {
    const KINDS: usize = 2;
    fn kind(&self) -> usize {
        match self {
            FollowEvent::Poll => 0,
            FollowEvent::Line(_) => 1,
        }
    }
    fn kind_name(kind: usize) -> &'static str {
        ["poll", "line"].get(kind).copied().unwrap_or("?")
    }
}

impl FollowEvents for FollowEvent {
    const POLL_KIND: usize = 0;
    const LINE_KIND: usize = 1;
    fn poll() -> Self {
        FollowEvent::Poll
    }
    fn line(line: Line) -> Self {
        FollowEvent::Line(line)
    }
    fn as_line(&self) -> Option<&Line> {
        match self {
            FollowEvent::Line(line) => Some(line),
            FollowEvent::Poll => None,
        }
    }
}

/// A file's identity: device and inode. A rotated file keeps its identity under its new name;
/// the new file at the old name has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    /// The device number.
    pub dev: u64,
    /// The inode number.
    pub ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A position in one particular file: what the persistent state keeps per path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The device number.
    pub dev: u64,
    /// The inode number.
    pub ino: u64,
    /// The byte offset: the start of the next line to read.
    pub offset: u64,
    /// A hash of the file's first bytes (up to [`FINGERPRINT_BYTES`], at most `offset`): a
    /// new file that got the old one's inode (deleted and created again while the daemon was
    /// down) is told apart by its content. `None` in states saved before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<u64>,
}

/// How many of a file's first bytes its fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 1024;

/// The fingerprint of the file for a position at `offset`: FNV-1a over its first
/// `min(offset, FINGERPRINT_BYTES)` bytes; `None` when that is nothing or cannot be read.
fn fingerprint(file: &File, offset: u64) -> Option<u64> {
    let len = usize::try_from(offset).map_or(FINGERPRINT_BYTES, |o| o.min(FINGERPRINT_BYTES));
    if len == 0 {
        return None;
    }
    let mut buf = [0u8; FINGERPRINT_BYTES];
    let mut got = 0;
    while got < len {
        match read_at(file, &mut buf[got..len], got as u64) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got += n,
        }
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &buf[..len] {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Some(h)
}

impl Position {
    fn new(id: FileId, offset: u64) -> Position {
        Position {
            dev: id.dev,
            ino: id.ino,
            offset,
            fingerprint: None,
        }
    }

    fn id(&self) -> FileId {
        FileId {
            dev: self.dev,
            ino: self.ino,
        }
    }
}

/// A pool of line buffers shared by the follower and its line events.
#[derive(Clone, Default)]
struct Pool(Rc<RefCell<Vec<Vec<u8>>>>);

impl Pool {
    fn take(&self, bytes: &[u8]) -> Buf {
        let mut v = self.0.borrow_mut().pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(bytes);
        Buf {
            bytes: v,
            pool: Some(self.clone()),
        }
    }

    fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

/// A line's bytes; back to its pool when dropped.
struct Buf {
    bytes: Vec<u8>,
    pool: Option<Pool>,
}

impl Clone for Buf {
    fn clone(&self) -> Self {
        match &self.pool {
            Some(pool) => pool.take(&self.bytes),
            None => Buf {
                bytes: self.bytes.clone(),
                pool: None,
            },
        }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let cap = self.bytes.capacity();
        if cap == 0 || cap > POOL_BUFFER_BYTES {
            return;
        }
        if let Some(pool) = &self.pool {
            if let Ok(mut free) = pool.0.try_borrow_mut() {
                if free.len() < POOL_BUFFERS {
                    free.push(std::mem::take(&mut self.bytes));
                }
            }
        }
    }
}

/// One line of a followed file.
#[derive(Clone)]
pub struct Line {
    source: u32,
    path: Rc<str>,
    id: FileId,
    end: u64,
    text: Buf,
}

impl Line {
    /// A line made by hand (tests, other producers), not from a follower's pool.
    pub fn new(source: u32, path: &str, id: FileId, end: u64, text: &[u8]) -> Line {
        Line {
            source,
            path: path.into(),
            id,
            end,
            text: Buf {
                bytes: text.to_vec(),
                pool: None,
            },
        }
    }

    /// The line's bytes, without the `\n`.
    pub fn text(&self) -> &[u8] {
        &self.text.bytes
    }

    /// The path the line was read from, as configured (made absolute).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A number for the path, stable while the follower follows it: cheaper to compare than
    /// the path.
    pub fn source(&self) -> u32 {
        self.source
    }

    /// The identity of the file the line was read from (after a rotation, the old file's).
    pub fn file_id(&self) -> FileId {
        self.id
    }

    /// The offset just after the line (after its `\n`) in that file.
    pub fn end(&self) -> u64 {
        self.end
    }
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Line")
            .field("path", &self.path)
            .field("end", &self.end)
            .field("text", &String::from_utf8_lossy(self.text()))
            .finish()
    }
}

/// Where to start in a file seen for the first time, without a saved position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// After its last complete line (`tail -F -n 0`).
    #[default]
    End,
    /// At its first byte.
    Beginning,
}

/// The follower's configuration section (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FollowSettings {
    /// The files to follow (at least one).
    pub files: Vec<PathBuf>,
    /// Milliseconds between two looks at the files (1 to 3,600,000; default 200).
    pub poll_ms: u64,
    /// Where to start in a file seen for the first time (default `"end"`).
    pub start_at: StartAt,
    /// The longest line, in bytes; longer ones are split (16 to 16 MiB; default 65,536).
    pub max_line: usize,
    /// The most lines one look emits (1 to 65,536; default 512).
    pub batch: usize,
    /// More names a file may be rotated to, beside it, besides `<name>.*` and `<name>-*`:
    /// file names with `*` (default none). On start, a file that was rotated while the daemon
    /// was down is looked for under them, to read the rest of it.
    pub rotated: Vec<String>,
}

impl Default for FollowSettings {
    fn default() -> Self {
        FollowSettings {
            files: Vec::new(),
            poll_ms: 200,
            start_at: StartAt::End,
            max_line: 65_536,
            batch: 512,
            rotated: Vec::new(),
        }
    }
}

impl FollowSettings {
    fn check(&self) -> Result<(), String> {
        if self.files.is_empty() {
            return Err("'files' lists no file to follow".into());
        }
        if !(1..=3_600_000).contains(&self.poll_ms) {
            return Err(format!(
                "'poll_ms' must be from 1 to 3600000, not {}",
                self.poll_ms
            ));
        }
        if !(16..=16 << 20).contains(&self.max_line) {
            return Err(format!(
                "'max_line' must be from 16 to 16777216, not {}",
                self.max_line
            ));
        }
        if !(1..=65_536).contains(&self.batch) {
            return Err(format!(
                "'batch' must be from 1 to 65536, not {}",
                self.batch
            ));
        }
        Ok(())
    }
}

/// A file being read.
#[derive(Debug)]
struct Open {
    file: File,
    id: FileId,
    /// The next byte to read: the start of the first line not emitted yet.
    pos: u64,
}

/// One configured path.
#[derive(Debug)]
struct Tracked {
    source: u32,
    path: PathBuf,
    label: Rc<str>,
    open: Option<Open>,
    /// The first look at this path is done: a file found later is new, read from its start.
    looked: bool,
    /// The position saved by the previous run, until the file is opened.
    restored: Option<Position>,
    /// Up to where the pipeline handled lines.
    handled: Option<Position>,
    /// Lines emitted and not handled yet.
    in_flight: u64,
    /// An error looking at the path was logged (not repeated until it changes, or the file
    /// can be read again).
    complained: Option<io::ErrorKind>,
    /// The last fingerprint computed: `(file, bytes covered, hash)`.
    fingerprinted: std::cell::Cell<Option<(FileId, u64, Option<u64>)>>,
}

impl Tracked {
    fn new(source: u32, path: PathBuf, restored: Option<Position>) -> Tracked {
        Tracked {
            source,
            label: path.to_string_lossy().into(),
            path,
            open: None,
            looked: false,
            restored,
            handled: None,
            in_flight: 0,
            complained: None,
            fingerprinted: std::cell::Cell::new(None),
        }
    }

    /// When no line is in flight, the handled position is the read position.
    fn settle(&mut self) {
        if self.in_flight == 0 {
            if let Some(o) = &self.open {
                self.handled = Some(Position::new(o.id, o.pos));
            }
        }
    }

    /// What to save for the next run: the handled position with the file's fingerprint.
    fn saved(&self) -> Option<Position> {
        let mut p = self.handled.or(self.restored)?;
        if p.fingerprint.is_none() {
            p.fingerprint = self.fingerprint_at(p);
        }
        Some(p)
    }

    /// The open file's fingerprint for position `p` (cached: it changes only while the file
    /// is shorter than [`FINGERPRINT_BYTES`]).
    fn fingerprint_at(&self, p: Position) -> Option<u64> {
        let open = self.open.as_ref().filter(|o| o.id == p.id())?;
        let covered = p.offset.min(FINGERPRINT_BYTES as u64);
        if let Some((id, n, fp)) = self.fingerprinted.get() {
            if id == open.id && n == covered {
                return fp;
            }
        }
        let fp = fingerprint(&open.file, p.offset);
        self.fingerprinted.set(Some((open.id, covered, fp)));
        fp
    }
}

/// Ids of the follower's counters.
#[derive(Debug, Clone, Copy)]
struct Ids {
    lines: CounterId,
    bytes: CounterId,
    rotations: CounterId,
    truncations: CounterId,
    split: CounterId,
    queue_full: CounterId,
}

/// Why reading a file stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// Nothing more to read now.
    Caught,
    /// The batch is used up: more may be there.
    Batch,
    /// The queue is full.
    Full,
}

/// What one look needs besides the file and the read buffer.
struct Reader<'a, 'k, U> {
    ctx: &'a mut Context<'k, U, StdClock>,
    pool: &'a Pool,
    counters: &'a mut Counters<8>,
    ids: Ids,
    budget: usize,
}

impl<U: FollowEvents> Reader<'_, '_, U> {
    /// Schedules one line; false when the queue is full.
    fn emit(&mut self, t: &mut Tracked, id: FileId, end: u64, text: &[u8]) -> bool {
        let line = Line {
            source: t.source,
            path: Rc::clone(&t.label),
            id,
            end,
            text: self.pool.take(text),
        };
        match self.ctx.schedule(U::line(line)) {
            Ok(()) => {
                t.in_flight += 1;
                self.budget -= 1;
                self.counters.inc_id(self.ids.lines, 1);
                self.counters.inc_id(self.ids.bytes, text.len() as u64 + 1);
                true
            }
            // The line comes back and is dropped (its buffer returns to the pool); it is
            // read again at the next look.
            Err(_) => {
                self.counters.inc_id(self.ids.queue_full, 1);
                false
            }
        }
    }

    /// Reads `t`'s open file from its position, emitting lines. With `to_end`, a partial line
    /// at the end of the file is emitted too (the file was rotated away).
    fn read(&mut self, buf: &mut [u8], t: &mut Tracked, to_end: bool) -> Stopped {
        let Some(mut open) = t.open.take() else {
            return Stopped::Caught;
        };
        let stopped = self.read_open(buf, t, &mut open, to_end);
        t.open = Some(open);
        stopped
    }

    fn read_open(
        &mut self,
        buf: &mut [u8],
        t: &mut Tracked,
        open: &mut Open,
        to_end: bool,
    ) -> Stopped {
        loop {
            if self.budget == 0 {
                return Stopped::Batch;
            }
            let n = match read_at(&open.file, buf, open.pos) {
                Ok(n) => n,
                Err(e) => {
                    log::error!("cannot read '{}': {e}", t.path.display());
                    return Stopped::Caught;
                }
            };
            if n == 0 {
                return Stopped::Caught;
            }
            let data = &buf[..n];
            let base = open.pos;
            let mut start = 0;
            for nl in memchr::memchr_iter(b'\n', data) {
                let end = base + nl as u64 + 1;
                if !self.emit(t, open.id, end, &data[start..nl]) {
                    return Stopped::Full;
                }
                open.pos = end;
                start = nl + 1;
                if self.budget == 0 {
                    return Stopped::Batch;
                }
            }
            if start == n {
                continue;
            }
            let rest = &data[start..];
            let end = base + n as u64;
            if start == 0 && n == buf.len() {
                // A line longer than `max_line`: one line, its first `max_line` bytes, once
                // its end is there (or the file was rotated away).
                let (newline, eof) = match find_newline(&open.file, end) {
                    Ok(found) => found,
                    Err(e) => {
                        log::error!("cannot read '{}': {e}", t.path.display());
                        return Stopped::Caught;
                    }
                };
                let line_end = match newline {
                    Some(nl) => nl + 1,
                    None if to_end => eof,
                    None => return Stopped::Caught,
                };
                if !self.emit(t, open.id, line_end, data) {
                    return Stopped::Full;
                }
                self.counters.inc_id(self.ids.split, 1);
                open.pos = line_end;
                continue;
            }
            if start > 0 && n == buf.len() {
                // The buffer ends inside a line: read again from its start.
                continue;
            }
            // The read ended inside a line: at the end of the file, or (rarely) short.
            let at_end = open.file.metadata().map_or(true, |m| m.len() <= end);
            if !at_end {
                continue;
            }
            if to_end {
                if !self.emit(t, open.id, end, rest) {
                    return Stopped::Full;
                }
                open.pos = end;
                continue;
            }
            return Stopped::Caught;
        }
    }
}

/// The offset of the first `\n` at or after `from`, if any, and where the file ended.
fn find_newline(file: &File, mut from: u64) -> io::Result<(Option<u64>, u64)> {
    let mut scan = [0u8; 8192];
    loop {
        let n = read_at(file, &mut scan, from)?;
        if n == 0 {
            return Ok((None, from));
        }
        if let Some(i) = memchr::memchr(b'\n', &scan[..n]) {
            return Ok((Some(from + i as u64), from + n as u64));
        }
        from += n as u64;
    }
}

/// `pread` that retries when interrupted.
fn read_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, pos) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The offset after the last complete line among the file's last `buf.len()` bytes: where
/// `start_at: "end"` begins, so a line being written is read whole once complete.
fn end_of_last_line(file: &File, size: u64, buf: &mut [u8]) -> u64 {
    let len = buf.len().min(usize::try_from(size).unwrap_or(usize::MAX));
    let from = size - len as u64;
    let mut got = 0;
    while got < len {
        match read_at(file, &mut buf[got..len], from + got as u64) {
            Ok(0) | Err(_) => return size,
            Ok(n) => got += n,
        }
    }
    match memchr::memrchr(b'\n', &buf[..len]) {
        Some(i) => from + i as u64 + 1,
        // No line end in the whole (short) file: its one line is still being written.
        None if from == 0 => 0,
        None => size,
    }
}

/// Follows files and emits their lines (see the [module documentation](self)).
pub struct Follower<U> {
    key: &'static str,
    settings: FollowSettings,
    /// Where relative paths start: the directory at the first `configure`.
    base: Option<PathBuf>,
    files: Vec<Tracked>,
    next_source: u32,
    /// Positions from the persistent state, by path.
    saved: BTreeMap<String, Position>,
    /// The pending poll timer, if the next look waits for one.
    timer: Option<TimerHandle>,
    /// The next look waits until the lines in flight are handled (the queue was full).
    resume: bool,
    /// Which file goes first at the next look.
    first: usize,
    buf: Vec<u8>,
    pool: Pool,
    counters: Counters<8>,
    ids: Ids,
    _events: PhantomData<fn() -> U>,
}

impl<U> fmt::Debug for Follower<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follower")
            .field("key", &self.key)
            .field("settings", &self.settings)
            .field("files", &self.files)
            .field("pooled_buffers", &self.pool.len())
            .finish()
    }
}

impl<U: FollowEvents> Follower<U> {
    /// A follower configured by the section `key` of the configuration.
    pub fn new(key: &'static str) -> Self {
        let mut counters = Counters::new();
        let mut reg = |key| {
            counters
                .register(key)
                .expect("six counters fit in a table of eight")
        };
        let ids = Ids {
            lines: reg("lines"),
            bytes: reg("bytes"),
            rotations: reg("rotations"),
            truncations: reg("truncations"),
            split: reg("split"),
            queue_full: reg("queue_full"),
        };
        Follower {
            key,
            settings: FollowSettings::default(),
            base: None,
            files: Vec::new(),
            next_source: 0,
            saved: BTreeMap::new(),
            timer: None,
            resume: false,
            first: 0,
            buf: Vec::new(),
            pool: Pool::default(),
            counters,
            ids,
            _events: PhantomData,
        }
    }

    /// Takes `settings` (checked) with relative paths taken from `base`: the same as
    /// configuring through a configuration file, for programs and tests that build settings
    /// in code.
    ///
    /// # Errors
    ///
    /// A message naming the bad value; the follower is then unchanged.
    pub fn apply(&mut self, settings: FollowSettings, base: &Path) -> Result<(), String> {
        settings.check()?;
        let mut paths: Vec<PathBuf> = Vec::with_capacity(settings.files.len());
        for file in &settings.files {
            if file.as_os_str().is_empty() {
                return Err("'files' has an empty path".into());
            }
            let path = base.join(file);
            if paths.contains(&path) {
                return Err(format!("'files' lists '{}' twice", path.display()));
            }
            paths.push(path);
        }
        // All checked: apply. Paths that stay keep their state.
        let reloading = self.base.is_some();
        let mut old = std::mem::take(&mut self.files);
        for path in paths {
            match old.iter().position(|t| t.path == path) {
                Some(i) => self.files.push(old.swap_remove(i)),
                None => {
                    let restored = self.saved.get(&*path.to_string_lossy()).copied();
                    let mut t = Tracked::new(self.next_source, path, restored);
                    self.next_source = self.next_source.wrapping_add(1);
                    // A file added by a reload is new to this run: read it whole.
                    t.looked = reloading;
                    self.files.push(t);
                }
            }
        }
        for t in old {
            log::info!("no longer following '{}'", t.path.display());
        }
        self.buf.resize(settings.max_line, 0);
        self.settings = settings;
        self.base.get_or_insert_with(|| base.to_path_buf());
        Ok(())
    }

    /// The settings in effect.
    pub fn settings(&self) -> &FollowSettings {
        &self.settings
    }

    /// The position up to which lines of `path` were handled (what a restart resumes from).
    pub fn handled(&self, path: &Path) -> Option<Position> {
        self.files
            .iter()
            .find(|t| t.path == path)
            .and_then(Tracked::saved)
    }

    /// Line buffers waiting in the pool.
    pub fn pooled_buffers(&self) -> usize {
        self.pool.len()
    }

    fn arm(&mut self, ctx: &mut Context<'_, U, StdClock>, more: bool) {
        if ctx.is_done() {
            return;
        }
        if more {
            // Behind the lines just emitted: the backlog drains as fast as they are handled.
            match ctx.schedule(U::poll()) {
                Ok(()) => return,
                Err(e) => drop(e.into_event()),
            }
            // The queue is full. With lines of ours in it, look again once they are handled
            // (see `handled_line`): there is room then.
            if self.in_flight() > 0 {
                self.resume = true;
                return;
            }
        }
        match ctx.schedule_after(Duration::from_millis(self.settings.poll_ms), U::poll()) {
            Ok(handle) => self.timer = Some(handle),
            Err(e) => log::error!(
                "cannot schedule the next look at the files ({:?}): following stops",
                e.kind()
            ),
        }
    }

    fn poll(&mut self, ctx: &mut Context<'_, U, StdClock>) {
        // Normally this poll is the timer's own event; a poll from elsewhere replaces it, so
        // exactly one look stays pending.
        if let Some(handle) = self.timer.take() {
            let _ = ctx.cancel(handle);
        }
        self.resume = false;
        if ctx.is_done() {
            return;
        }
        let ids = self.ids;
        let n = self.files.len();
        let mut reader = Reader {
            ctx,
            pool: &self.pool,
            counters: &mut self.counters,
            ids,
            budget: self.settings.batch,
        };
        let mut more = false;
        for i in 0..n {
            let t = &mut self.files[(self.first + i) % n];
            match look(&mut reader, &mut self.buf, t, &self.settings) {
                Stopped::Caught => {}
                Stopped::Batch => more = true,
                Stopped::Full => {
                    more = true;
                    break;
                }
            }
        }
        self.first = (self.first + 1) % n.max(1);
        self.arm(ctx, more);
    }

    fn handled_line(&mut self, ctx: &mut Context<'_, U, StdClock>, line: &Line) {
        if let Some(t) = self.files.iter_mut().find(|t| t.source == line.source) {
            t.in_flight = t.in_flight.saturating_sub(1);
            t.handled = Some(Position::new(line.id, line.end));
            t.settle();
        }
        if self.resume && self.in_flight() == 0 {
            self.resume = false;
            self.arm(ctx, true);
        }
    }

    /// Lines emitted and not handled yet, of every file.
    fn in_flight(&self) -> u64 {
        self.files.iter().map(|t| t.in_flight).sum()
    }
}

/// One look at one path: follow a rotation or truncation, open a file that appeared, read.
fn look<U: FollowEvents>(
    reader: &mut Reader<'_, '_, U>,
    buf: &mut [u8],
    t: &mut Tracked,
    settings: &FollowSettings,
) -> Stopped {
    let at_path = match fs::metadata(&t.path) {
        Ok(m) if m.is_file() => Some((FileId::of(&m), m.len())),
        Ok(_) => {
            complain(t, io::ErrorKind::InvalidInput, "it is not a regular file");
            None
        }
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound || t.open.is_none() {
                complain(t, e.kind(), &e.to_string());
            }
            None
        }
    };
    if let Some(open) = &mut t.open {
        if at_path.is_none_or(|(id, _)| id == open.id) {
            // The same file, or none at the path (read on what we hold).
            match open.file.metadata() {
                Ok(m) if m.len() < open.pos => {
                    log::info!(
                        "'{}' was truncated (from {} to {} bytes): reading it from the start",
                        t.path.display(),
                        open.pos,
                        m.len()
                    );
                    open.pos = 0;
                    reader.counters.inc_id(reader.ids.truncations, 1);
                    t.settle();
                }
                Ok(_) => {}
                Err(e) => log::error!("cannot stat '{}': {e}", t.path.display()),
            }
            return reader.read(buf, t, false);
        }
        // Another file at the path: finish the old one, then follow the new one.
        let stopped = reader.read(buf, t, true);
        if stopped != Stopped::Caught {
            return stopped;
        }
        log::info!(
            "'{}' was replaced (rotated): following the new file from its start",
            t.path.display()
        );
        reader.counters.inc_id(reader.ids.rotations, 1);
        t.open = None;
        t.looked = true;
    }
    let Some((id_at_path, size_at_path)) = at_path else {
        t.looked = true;
        return Stopped::Caught;
    };
    let file = match File::open(&t.path) {
        Ok(f) => f,
        Err(e) => {
            if e.kind() == io::ErrorKind::PermissionDenied
                && t.restored.is_none()
                && !t.looked
                && settings.start_at == StartAt::End
            {
                // Where `start_at: end` begins is decided now, at the first look, so the
                // lines written until the file can be read are not skipped then.
                t.restored = Some(Position::new(id_at_path, size_at_path));
                t.looked = true;
            }
            complain(t, e.kind(), &e.to_string());
            return Stopped::Caught;
        }
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => {
            complain(t, e.kind(), &e.to_string());
            return Stopped::Caught;
        }
    };
    if t.complained.take().is_some() {
        log::info!("'{}' can be read again", t.path.display());
    }
    let id = FileId::of(&meta);
    let size = meta.len();
    let same_content = |p: &Position| {
        p.fingerprint
            .is_none_or(|fp| fingerprint(&file, p.offset) == Some(fp))
    };
    let pos = match t.restored.take() {
        Some(p) if p.id() == id && p.offset <= size && same_content(&p) => {
            log::info!(
                "following '{}' from offset {} (saved)",
                t.path.display(),
                p.offset
            );
            p.offset
        }
        Some(p) if p.id() == id && p.offset <= size => {
            log::info!(
                "'{}' is another file on the same inode than at the last run (its first bytes \
                 differ): reading it from the start",
                t.path.display()
            );
            0
        }
        Some(p) if p.id() == id => {
            log::info!(
                "'{}' is shorter than its saved offset {} (truncated meanwhile): reading it \
                 from the start",
                t.path.display(),
                p.offset
            );
            0
        }
        Some(p) => {
            if let Some((rotated, old)) = find_rotated(&t.path, &p, &settings.rotated) {
                log::info!(
                    "'{}' was rotated to '{}' while the daemon was down: reading the rest of \
                     it from offset {} first",
                    t.path.display(),
                    rotated.display(),
                    p.offset
                );
                t.looked = true;
                t.open = Some(Open {
                    file: old,
                    id: p.id(),
                    pos: p.offset,
                });
                t.settle();
                // The path holds another file now: the next step finishes the old one.
                return look(reader, buf, t, settings);
            }
            log::info!(
                "'{}' is another file than at the last run (rotated meanwhile): reading it \
                 from the start",
                t.path.display()
            );
            0
        }
        None if t.looked || settings.start_at == StartAt::Beginning => {
            log::info!("following '{}' from its start", t.path.display());
            0
        }
        None => {
            let pos = end_of_last_line(&file, size, buf);
            log::info!(
                "following '{}' from offset {pos} (its end)",
                t.path.display()
            );
            pos
        }
    };
    t.looked = true;
    t.open = Some(Open { file, id, pos });
    t.settle();
    reader.read(buf, t, false)
}

/// The file that was at `path` at position `p`, under a rotated name beside it: `<name>.*`,
/// `<name>-*` or one of the `patterns` (file names with `*`), with the same device and inode,
/// at least `p.offset` long, and the same first bytes.
fn find_rotated(path: &Path, p: &Position, patterns: &[String]) -> Option<(PathBuf, File)> {
    let dir = path.parent()?;
    let name = path.file_name()?.to_str()?;
    let dotted = format!("{name}.*");
    let dashed = format!("{name}-*");
    let entries = fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(candidate) = file_name.to_str() else {
            continue;
        };
        let matches = [dotted.as_str(), dashed.as_str()]
            .into_iter()
            .chain(patterns.iter().map(String::as_str))
            .any(|pattern| glob_match(pattern, candidate));
        if !matches {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || FileId::of(&meta) != p.id() || meta.len() < p.offset {
            continue;
        }
        let Ok(file) = File::open(entry.path()) else {
            continue;
        };
        if p.fingerprint
            .is_none_or(|fp| fingerprint(&file, p.offset) == Some(fp))
        {
            return Some((entry.path(), file));
        }
    }
    None
}

/// `*` matches any run of characters; everything else itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            let Some(rest) = name.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| glob_match(tail, &rest[i..]))
        }
    }
}

/// Logs a problem with a path once, until it changes.
fn complain(t: &mut Tracked, kind: io::ErrorKind, what: &str) {
    if t.complained != Some(kind) {
        t.complained = Some(kind);
        if kind == io::ErrorKind::NotFound {
            log::info!("waiting for '{}' to appear", t.path.display());
        } else {
            log::warn!("cannot follow '{}' yet: {what}", t.path.display());
        }
    }
}

impl<U: FollowEvents> Component<U, StdClock> for Follower<U> {
    fn name(&self) -> &'static str {
        "follower"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(Kind::START)?;
        routes.append(Kind::STOP)?;
        routes.append(Kind::RELOAD)?;
        routes.append(Kind::user(U::POLL_KIND))?;
        // First in the lines' pipeline: every line is seen, whatever later handlers return.
        routes.prepend(Kind::user(U::LINE_KIND))?;
        Ok(())
    }

    fn handle(&mut self, ctx: &mut Context<'_, U, StdClock>, event: &mut Event<U>) -> Flow {
        match event {
            Event::User(e) => {
                if let Some(line) = e.as_line() {
                    self.handled_line(ctx, line);
                } else if e.kind() == U::POLL_KIND {
                    self.poll(ctx);
                }
            }
            // Look at once, in `start` itself: the files' first positions are decided before
            // the checkpoint that follows `start`, so a first run that crashes resumes there.
            // Then every `poll_ms`.
            Event::Start => self.poll(ctx),
            Event::Reload => {
                // New files and a new interval apply at once.
                if let Some(handle) = self.timer.take() {
                    let _ = ctx.cancel(handle);
                    self.arm(ctx, true);
                }
            }
            Event::Stop => {
                if let Some(handle) = self.timer.take() {
                    let _ = ctx.cancel(handle);
                }
            }
            _ => {}
        }
        Flow::Continue
    }

    fn counters(&self) -> Option<&dyn CounterSet> {
        Some(&self.counters)
    }

    fn counters_mut(&mut self) -> Option<&mut dyn CounterSet> {
        Some(&mut self.counters)
    }

    fn state(&self, out: &mut dyn StateVisitor) {
        out.field("files", StateValue::U64(self.files.len() as u64));
        for t in &self.files {
            let p = &t.label;
            out.field(&format!("{p}:open"), StateValue::Bool(t.open.is_some()));
            if let Some(o) = &t.open {
                out.field(&format!("{p}:device"), StateValue::U64(o.id.dev));
                out.field(&format!("{p}:inode"), StateValue::U64(o.id.ino));
                out.field(&format!("{p}:offset"), StateValue::U64(o.pos));
            }
            if let Some(h) = t.saved() {
                out.field(&format!("{p}:handled"), StateValue::U64(h.offset));
            }
            out.field(&format!("{p}:in_flight"), StateValue::U64(t.in_flight));
        }
    }
}

/// The persistent state entry.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    files: BTreeMap<String, Position>,
}

impl<U: FollowEvents> Service<U> for Follower<U> {
    fn config_key(&self) -> Option<&'static str> {
        Some(self.key)
    }

    fn configure(&mut self, config: &Config) -> zendaemon::Result<()> {
        let Some(settings) = config.component::<FollowSettings>(self.key)? else {
            // No section at all: say which file lacks which section.
            let file = &config.settings().config_file;
            let read = if config.files().contains(file) {
                ""
            } else {
                " (the file does not exist)"
            };
            return Err(Error::config(
                format!("{}{read}", file.display()),
                format!(
                    "the '{}' section is missing: it lists the files to follow, for example \
                     {{\"{}\": {{\"files\": [\"/var/log/syslog\"]}}}}",
                    self.key, self.key
                ),
            ));
        };
        let base = match &self.base {
            Some(b) => b.clone(),
            None => {
                std::env::current_dir().map_err(|e| Error::os("read the current directory", e))?
            }
        };
        self.apply(settings, &base).map_err(|why| {
            let origin = config
                .origin(self.key)
                .map_or_else(|| "the configuration".to_owned(), ToString::to_string);
            Error::config(origin, format!("key '{}': {why}", self.key))
        })
    }

    fn restore(&mut self, pstate: Option<&Value>) -> zendaemon::Result<()> {
        let Some(v) = pstate else { return Ok(()) };
        let saved = Saved::deserialize(v).map_err(|e| {
            Error::Daemon(format!(
                "the persistent state of the follower is not understood ({e}): fix or remove \
                 its entry"
            ))
        })?;
        for t in &mut self.files {
            t.restored = saved.files.get(&*t.label).copied();
        }
        self.saved = saved.files;
        Ok(())
    }

    fn persist(&self) -> Option<Value> {
        let files = self
            .files
            .iter()
            .filter_map(|t| Some((t.label.to_string(), t.saved()?)))
            .collect();
        serde_json::to_value(Saved { files }).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;
    use zendaemon::core::{Idle, Kernel, Settings};

    /// Records the lines it sees (after the follower in the pipeline).
    struct Collect(Rc<RefCell<Vec<String>>>);

    impl Component<FollowEvent, StdClock> for Collect {
        fn name(&self) -> &'static str {
            "collect"
        }
        fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
            routes.append(Kind::user(FollowEvent::LINE_KIND))
        }
        fn handle(
            &mut self,
            _: &mut Context<'_, FollowEvent, StdClock>,
            event: &mut Event<FollowEvent>,
        ) -> Flow {
            if let Event::User(FollowEvent::Line(line)) = event {
                let text = String::from_utf8_lossy(line.text()).into_owned();
                self.0.borrow_mut().push(text);
            }
            Flow::Continue
        }
    }

    /// A kernel with a follower and a collector; `look` polls and returns the new lines.
    struct Rig<'c, const S: usize> {
        kernel: Kernel<
            'c,
            FollowEvent,
            StdClock,
            2,
            { zendaemon::core::kinds::<FollowEvent>() },
            2,
            S,
            8,
        >,
        seen: Rc<RefCell<Vec<String>>>,
    }

    impl<'c, const S: usize> Rig<'c, S> {
        fn new(follower: &'c mut Follower<FollowEvent>, collect: &'c mut Collect) -> Self {
            let seen = Rc::clone(&collect.0);
            let mut kernel: Kernel<
                'c,
                FollowEvent,
                StdClock,
                2,
                { zendaemon::core::kinds::<FollowEvent>() },
                2,
                S,
                8,
            > = Kernel::new(Settings::default());
            kernel.add(follower).unwrap();
            kernel.add(collect).unwrap();
            kernel.start(StdClock::now()).unwrap();
            Rig { kernel, seen }
        }

        /// Dispatches what is queued, without a new look.
        fn drain(&mut self) -> Vec<String> {
            assert_eq!(
                self.kernel.run_until_idle(StdClock::now()),
                Ok(Idle::Waiting)
            );
            std::mem::take(&mut *self.seen.borrow_mut())
        }

        fn look(&mut self) -> Vec<String> {
            self.kernel.queue().schedule(FollowEvent::Poll).unwrap();
            self.drain()
        }
    }

    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Dir {
            Dir(tempfile::tempdir().unwrap())
        }
        fn path(&self, name: &str) -> PathBuf {
            self.0.path().join(name)
        }
        fn append(&self, name: &str, text: &str) {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(name))
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        }
        /// A follower of `files`, polled only by hand (`look`).
        fn follower(
            &self,
            files: &[&str],
            f: impl FnOnce(&mut FollowSettings),
        ) -> Follower<FollowEvent> {
            let mut settings = FollowSettings {
                files: files.iter().map(PathBuf::from).collect(),
                poll_ms: 3_600_000,
                start_at: StartAt::Beginning,
                ..FollowSettings::default()
            };
            f(&mut settings);
            let mut follower = Follower::new("tail");
            follower.apply(settings, self.0.path()).unwrap();
            follower
        }
    }

    fn collect() -> Collect {
        Collect(Rc::default())
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn appended_lines_in_order_and_partial_lines_wait() {
        let dir = Dir::new();
        dir.append("a.log", "one\ntwo\nthr");
        let (mut f, mut c) = (dir.follower(&["a.log"], |_| {}), collect());
        let mut rig = Rig::<64>::new(&mut f, &mut c);
        assert_eq!(rig.look(), lines(&["one", "two"]));
        assert_eq!(rig.look(), lines(&[]));
        dir.append("a.log", "ee\n\nfour\n");
        assert_eq!(rig.look(), lines(&["three", "", "four"]));
        drop(rig);
        let end = fs::metadata(dir.path("a.log")).unwrap().len();
        assert_eq!(f.handled(&dir.path("a.log")).unwrap().offset, end);
    }

    #[test]
    fn start_at_end_skips_what_is_there_but_a_line_being_written() {
        let dir = Dir::new();
        dir.append("a.log", "old\nolder\nhalf");
        let mut f = dir.follower(&["a.log"], |s| s.start_at = StartAt::End);
        let mut c = collect();
        let mut rig = Rig::<64>::new(&mut f, &mut c);
        assert_eq!(rig.look(), lines(&[]));
        dir.append("a.log", " done\nnew\n");
        assert_eq!(rig.look(), lines(&["half done", "new"]));
    }

    #[test]
    fn rotation_by_rename_finishes_the_old_file_first() {
        let dir = Dir::new();
        dir.append("a.log", "1\n");
        let (mut f, mut c) = (dir.follower(&["a.log"], |_| {}), collect());
        let mut rig = Rig::<64>::new(&mut f, &mut c);
        assert_eq!(rig.look(), lines(&["1"]));
        // A writer still holding the old file writes on after the rename.
        let mut old = OpenOptions::new()
            .append(true)
            .open(dir.path("a.log"))
            .unwrap();
        fs::rename(dir.path("a.log"), dir.path("a.log.1")).unwrap();
        old.write_all(b"2\n").unwrap();
        // Nothing at the path yet: the old file is read on.
        assert_eq!(rig.look(), lines(&["2"]));
        old.write_all(b"3\nunfinished").unwrap();
        dir.append("a.log", "new 1\nnew 2\n");
        assert_eq!(rig.look(), lines(&["3", "unfinished", "new 1", "new 2"]));
        dir.append("a.log", "new 3\n");
        assert_eq!(rig.look(), lines(&["new 3"]));
        drop(rig);
        let saved = f.handled(&dir.path("a.log")).unwrap();
        let meta = fs::metadata(dir.path("a.log")).unwrap();
        assert_eq!((saved.ino, saved.offset), (meta.ino(), meta.len()));
        assert_eq!(f.counters.get("rotations"), 1);
    }

    #[test]
    fn truncation_reads_from_the_start() {
        let dir = Dir::new();
        dir.append("a.log", "aaaa\nbbbb\n");
        let (mut f, mut c) = (dir.follower(&["a.log"], |_| {}), collect());
        let mut rig = Rig::<64>::new(&mut f, &mut c);
        assert_eq!(rig.look(), lines(&["aaaa", "bbbb"]));
        // copytruncate: copy, then truncate in place.
        fs::copy(dir.path("a.log"), dir.path("a.log.1")).unwrap();
        OpenOptions::new()
            .write(true)
            .open(dir.path("a.log"))
            .unwrap()
            .set_len(0)
            .unwrap();
        dir.append("a.log", "c\n");
        assert_eq!(rig.look(), lines(&["c"]));
        drop(rig);
        assert_eq!(f.counters.get("truncations"), 1);
        assert_eq!(f.handled(&dir.path("a.log")).unwrap().offset, 2);
    }

    #[test]
    fn a_missing_file_is_read_from_its_start_once_it_appears() {
        let dir = Dir::new();
        let mut f = dir.follower(&["late.log"], |s| s.start_at = StartAt::End);
        let mut c = collect();
        let mut rig = Rig::<64>::new(&mut f, &mut c);
        assert_eq!(rig.look(), lines(&[]));
        dir.append("late.log", "first\n");
        assert_eq!(rig.look(), lines(&["first"]));
    }

    #[test]
    fn batches_and_a_full_queue_lose_nothing() {
        let dir = Dir::new();
        for name in ["a", "b"] {
            let text: String = (0..100).map(|i| format!("{name}{i}\n")).collect();
            dir.append(&format!("{name}.log"), &text);
        }
        // 10 lines per look into a queue with room for 4: lines are handed back and read
        // again, and the next look waits until the queue drained.
        let mut f = dir.follower(&["a.log", "b.log"], |s| s.batch = 10);
        let mut c = collect();
        let mut rig = Rig::<4>::new(&mut f, &mut c);
        let seen = rig.drain();
        for name in ["a", "b"] {
            let of_file: Vec<&String> = seen.iter().filter(|l| l.starts_with(name)).collect();
            let expected: Vec<String> = (0..100).map(|i| format!("{name}{i}")).collect();
            assert_eq!(of_file, expected.iter().collect::<Vec<_>>());
        }
        assert_eq!(seen.len(), 200);
        drop(rig);
        assert!(f.counters.get("queue_full") > 0);
        // Buffers came back to the pool: the steady state allocates nothing per line.
        assert!(f.pooled_buffers() > 0);
    }

    #[test]
    fn a_restart_resumes_after_the_last_handled_line() {
        let dir = Dir::new();
        dir.append("a.log", "1\n2\n");
        let (mut f, mut c) = (dir.follower(&["a.log"], |_| {}), collect());
        let mut rig = Rig::<64>::new(&mut f, &mut c);
        assert_eq!(rig.look(), lines(&["1", "2"]));
        dir.append("a.log", "3\n4\n");
        // Read and queued, but the run ends before they are handled.
        rig.kernel.queue().schedule(FollowEvent::Poll).unwrap();
        rig.kernel.step(StdClock::now()).unwrap();
        assert_eq!(rig.seen.borrow().len(), 0);
        drop(rig);
        let saved = f.persist().unwrap();
        assert_eq!(
            saved["files"][&*dir.path("a.log").to_string_lossy()]["offset"],
            4
        );

        // The next run: the queued lines are read again, nothing before them.
        let mut f2 = dir.follower(&["a.log"], |_| {});
        f2.restore(Some(&saved)).unwrap();
        let mut c2 = collect();
        let mut rig = Rig::<64>::new(&mut f2, &mut c2);
        assert_eq!(rig.look(), lines(&["3", "4"]));
        drop(rig);
        let saved = f2.persist().unwrap();

        // Replaced while the daemon was down: the new file from its start.
        fs::rename(dir.path("a.log"), dir.path("a.log.1")).unwrap();
        dir.append("a.log", "n1\n");
        let mut f3 = dir.follower(&["a.log"], |s| s.start_at = StartAt::End);
        f3.restore(Some(&saved)).unwrap();
        let mut c3 = collect();
        let mut rig = Rig::<64>::new(&mut f3, &mut c3);
        assert_eq!(rig.look(), lines(&["n1"]));
        drop(rig);
        let saved = f3.persist().unwrap();

        // Truncated while the daemon was down: from the start.
        fs::write(dir.path("a.log"), "t\n").unwrap();
        let mut f4 = dir.follower(&["a.log"], |s| s.start_at = StartAt::End);
        f4.restore(Some(&saved)).unwrap();
        let mut c4 = collect();
        let mut rig = Rig::<64>::new(&mut f4, &mut c4);
        // "n1\n" was 3 bytes, "t\n" is 2: shorter, so read again from the start.
        assert_eq!(rig.look(), lines(&["t"]));
    }

    /// The follower's state for the next run, after a run that handled everything.
    fn run_once(f: &mut Follower<FollowEvent>) -> (Vec<String>, Value) {
        let mut c = collect();
        let mut rig = Rig::<64>::new(f, &mut c);
        let seen = rig.look();
        drop(rig);
        (seen, f.persist().unwrap())
    }

    /// A new run of a follower of `a.log` from `saved`.
    fn next_run(
        dir: &Dir,
        saved: &Value,
        settings: impl FnOnce(&mut FollowSettings),
    ) -> Follower<FollowEvent> {
        let mut f = dir.follower(&["a.log"], settings);
        f.restore(Some(saved)).unwrap();
        f
    }

    #[test]
    fn rotated_while_down_after_growing_the_old_file_is_finished_first() {
        let dir = Dir::new();
        dir.append("a.log", "1\n2\n");
        let mut f = dir.follower(&["a.log"], |_| {});
        let (seen, saved) = run_once(&mut f);
        assert_eq!(seen, lines(&["1", "2"]));
        // While down: the old file grew, was renamed, and a new one took its name.
        dir.append("a.log", "3\n4\n");
        fs::rename(dir.path("a.log"), dir.path("a.log.1")).unwrap();
        dir.append("a.log", "new 1\n");
        let mut f = next_run(&dir, &saved, |_| {});
        let (seen, saved) = run_once(&mut f);
        assert_eq!(seen, lines(&["3", "4", "new 1"]));
        // Again, under a dated name, with a partial last line in the old file.
        dir.append("a.log", "new 2\nnew 3");
        fs::rename(dir.path("a.log"), dir.path("a.log-20261208")).unwrap();
        dir.append("a.log", "newer\n");
        let mut f = next_run(&dir, &saved, |_| {});
        let (seen, _) = run_once(&mut f);
        assert_eq!(seen, lines(&["new 2", "new 3", "newer"]));
    }

    #[test]
    fn a_new_file_on_a_reused_inode_is_read_from_its_start() {
        let dir = Dir::new();
        dir.append("a.log", "old 1\nold 2\n");
        let mut f = dir.follower(&["a.log"], |_| {});
        let (_, mut saved) = run_once(&mut f);
        // While down: deleted and created again, longer, and (as ext4 may do) on the same
        // inode. Forced here by giving the saved position the new file's identity.
        fs::remove_file(dir.path("a.log")).unwrap();
        dir.append("a.log", "new 1\nnew 2\nnew 3\n");
        let meta = fs::metadata(dir.path("a.log")).unwrap();
        let entry = &mut saved["files"][&*dir.path("a.log").to_string_lossy()];
        entry["dev"] = meta.dev().into();
        entry["ino"] = meta.ino().into();
        let mut f = next_run(&dir, &saved, |_| {});
        let (seen, _) = run_once(&mut f);
        assert_eq!(seen, lines(&["new 1", "new 2", "new 3"]));
    }

    #[test]
    fn a_line_longer_than_max_line_is_one_line_cut_at_max_line() {
        let dir = Dir::new();
        let long = format!("{}ERROR{}", "x".repeat(30), "y".repeat(60));
        dir.append("a.log", &format!("short\n{long}\nERROR\n"));
        let mut f = dir.follower(&["a.log"], |s| s.max_line = 16);
        let mut c = collect();
        let mut rig = Rig::<64>::new(&mut f, &mut c);
        assert_eq!(rig.look(), lines(&["short", &"x".repeat(16), "ERROR"]));
        // A long line still being written waits for its end.
        dir.append("a.log", &"z".repeat(40));
        assert_eq!(rig.look(), lines(&[]));
        dir.append("a.log", "zz\nlast\n");
        assert_eq!(rig.look(), lines(&[&"z".repeat(16), "last"]));
        drop(rig);
        assert_eq!(f.counters.get("split"), 2);
        assert_eq!(f.counters.get("lines"), 5);
        let end = fs::metadata(dir.path("a.log")).unwrap().len();
        assert_eq!(f.handled(&dir.path("a.log")).unwrap().offset, end);
    }

    #[test]
    fn an_unreadable_file_is_read_from_where_it_was_once_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = Dir::new();
        // Root reads everything: check permissions as nobody, on this thread only.
        fs::set_permissions(dir.0.path(), fs::Permissions::from_mode(0o755)).unwrap();
        dir.append("a.log", "before\n");
        let chmod = |mode| {
            fs::set_permissions(dir.path("a.log"), fs::Permissions::from_mode(mode)).unwrap();
        };
        chmod(0o600);
        let as_nobody = |rig: &mut Rig<'_, 64>| {
            let root = nix::unistd::setfsuid(nix::unistd::Uid::from_raw(65534));
            let seen = rig.look();
            nix::unistd::setfsuid(root);
            seen
        };
        let mut f = dir.follower(&["a.log"], |s| s.start_at = StartAt::End);
        let mut c = collect();
        let mut rig = Rig::<64>::new(&mut f, &mut c);
        assert_eq!(as_nobody(&mut rig), lines(&[]));
        // Written while it cannot be read, then readable: not skipped.
        dir.append("a.log", "while unreadable\n");
        assert_eq!(as_nobody(&mut rig), lines(&[]));
        chmod(0o644);
        dir.append("a.log", "after\n");
        assert_eq!(as_nobody(&mut rig), lines(&["while unreadable", "after"]));
        drop(rig);
        assert!(f.files[0].complained.is_none());
    }

    #[test]
    fn bad_settings_are_refused_and_change_nothing() {
        let dir = Dir::new();
        let mut f = dir.follower(&["a.log"], |_| {});
        let before = f.settings().clone();
        for (bad, why) in [
            (
                FollowSettings {
                    files: vec![],
                    ..before.clone()
                },
                "no file",
            ),
            (
                FollowSettings {
                    poll_ms: 0,
                    ..before.clone()
                },
                "poll_ms",
            ),
            (
                FollowSettings {
                    files: vec!["x".into(), "x".into()],
                    ..before.clone()
                },
                "twice",
            ),
            (
                FollowSettings {
                    max_line: 1,
                    ..before.clone()
                },
                "max_line",
            ),
        ] {
            let err = f.apply(bad, dir.0.path()).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        assert_eq!(f.settings(), &before);
        let err = serde_json::from_str::<FollowSettings>(r#"{"file": ["a"]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `file`"), "{err}");
    }
}
