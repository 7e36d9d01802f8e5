//! [`LineCounter`]: counts lines per file and the lines matching configured patterns, and logs
//! the matching ones.
//!
//! It handles the line events of a [`Follower`](crate::Follower) (any event type that
//! implements [`FollowEvents`]) and passes every line on unchanged ([`Flow::Continue`]), so
//! more components may follow it in the pipeline.
//!
//! # Configuration
//!
//! The section under the key given to [`LineCounter::new`] ([`CountSettings`]):
//!
//! ```json
//! "count": {
//!     "patterns": { "errors": "ERROR|FATAL", "sshd": "sshd\\[[0-9]+\\]" },
//!     "log_matches": true
//! }
//! ```
//!
//! Patterns are regular expressions ([`regex`] syntax), matched anywhere in the line's bytes
//! (a line need not be UTF-8); anchor them with `^`/`$` to match whole lines. All patterns run
//! in one pass over a line ([`regex::bytes::RegexSet`]), and a line that matches none costs no
//! allocation. Names are letters, digits, `_`, `-` and `.`; `lines` is taken.
//!
//! # What it reports
//!
//! * Counters (in the statistics log lines, runlogs and state dumps): `lines` and one per
//!   pattern name, over all files; `<path>:lines` and `<path>:<name>` per file. A line
//!   matching two patterns counts for both.
//! * With `log_matches` (the default), every matching line is logged at the info level:
//!   `match [errors] /var/log/app.log: <the line>` (the names of every pattern it matched).
//!   That is the `tail -F | grep` part; the counts are the `wc -l` part.
//!
//! # Persistent state
//!
//! `{"counts": {"<counter>": n, …}}`: at the next start the counters go on from there, so
//! with the follower's saved positions a restart neither loses nor repeats a count. The first
//! statistics interval after a start shows the restored counts as its baseline.
//!
//! # Limits
//!
//! Counter names are `&'static str` (the kernel's counters keep no heap): a name made from a
//! path or pattern is allocated once per process and kept, even if a reload drops it. At most
//! 255 counters: per-file counters that do not fit are left out (logged once), the totals
//! always fit while there are at most 254 patterns.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Mutex, PoisonError};

use regex::bytes::RegexSet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zendaemon::core::{
    Component, Context, CounterId, CounterSet, Counters, Event, Flow, Kind, RouteError, Routes,
    StateValue, StateVisitor,
};
use zendaemon::{Config, Error, Service, StdClock};

use crate::follow::{FollowEvents, Line};

/// The most counters a [`LineCounter`] keeps.
pub const MAX_COUNTERS: usize = 255;

/// The counter's configuration section (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CountSettings {
    /// Pattern names and regular expressions.
    pub patterns: BTreeMap<String, String>,
    /// Log every line that matches a pattern (default true).
    pub log_matches: bool,
}

impl Default for CountSettings {
    fn default() -> Self {
        CountSettings {
            patterns: BTreeMap::new(),
            log_matches: true,
        }
    }
}

/// Why a pattern name is refused, if it is.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a pattern name must not be empty")
    } else if name == "lines" {
        Some("'lines' is the name of the line counter")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Some("a pattern name may contain only letters, digits, '_', '-' and '.'")
    } else {
        None
    }
}

/// A `&'static str` for a counter name, allocated once per distinct name.
fn intern(s: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(name) = names.get(s) {
        return name;
    }
    let name: &'static str = Box::leak(s.to_owned().into_boxed_str());
    names.insert(name);
    name
}

/// Compiled patterns.
struct Patterns {
    names: Vec<&'static str>,
    set: RegexSet,
    /// The total counter of each pattern.
    ids: Vec<Option<CounterId>>,
}

/// The counters of one file.
#[derive(Debug)]
struct PerFile {
    source: u32,
    lines: Option<CounterId>,
    patterns: Vec<Option<CounterId>>,
}

/// Counts lines and pattern matches (see the [module documentation](self)).
pub struct LineCounter<U> {
    key: &'static str,
    settings: CountSettings,
    patterns: Option<Patterns>,
    counters: Counters<MAX_COUNTERS>,
    lines: CounterId,
    files: Vec<PerFile>,
    /// The index in `files` of the previous line's file.
    last: usize,
    full_logged: bool,
    _events: PhantomData<fn() -> U>,
}

impl<U> fmt::Debug for LineCounter<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineCounter")
            .field("key", &self.key)
            .field("settings", &self.settings)
            .field("counters", &CounterSet::len(&self.counters))
            .finish()
    }
}

impl<U: FollowEvents> LineCounter<U> {
    /// A counter configured by the section `key` of the configuration.
    pub fn new(key: &'static str) -> Self {
        let mut counters = Counters::new();
        let lines = counters.register("lines").expect("an empty table has room");
        LineCounter {
            key,
            settings: CountSettings::default(),
            patterns: None,
            counters,
            lines,
            files: Vec::new(),
            last: 0,
            full_logged: false,
            _events: PhantomData,
        }
    }

    /// Takes `settings` (checked and compiled): the same as configuring through a
    /// configuration file.
    ///
    /// # Errors
    ///
    /// A message naming the bad pattern; the counter is then unchanged.
    pub fn apply(&mut self, settings: CountSettings) -> Result<(), String> {
        for name in settings.patterns.keys() {
            if let Some(why) = name_problem(name) {
                return Err(format!("pattern name '{name}': {why}"));
            }
        }
        if settings.patterns.len() >= MAX_COUNTERS {
            return Err(format!(
                "{} patterns, but at most {} fit",
                settings.patterns.len(),
                MAX_COUNTERS - 1
            ));
        }
        let patterns = if settings.patterns.is_empty() {
            None
        } else {
            let set = RegexSet::new(settings.patterns.values()).map_err(|e| {
                // Name the pattern: compile them one by one to find it.
                let bad = settings
                    .patterns
                    .iter()
                    .find(|(_, p)| regex::bytes::Regex::new(p).is_err())
                    .map_or_else(String::new, |(n, _)| format!("pattern '{n}': "));
                format!("{bad}{e}")
            })?;
            let names: Vec<&'static str> = settings.patterns.keys().map(|n| intern(n)).collect();
            Some(Patterns {
                ids: names.iter().map(|n| self.register(n)).collect(),
                names,
                set,
            })
        };
        self.patterns = patterns;
        self.settings = settings;
        // Per-file counters are found again at each file's next line.
        self.files.clear();
        self.last = 0;
        Ok(())
    }

    /// The settings in effect.
    pub fn settings(&self) -> &CountSettings {
        &self.settings
    }

    /// The current value of counter `key` (0 if there is none).
    pub fn count(&self, key: &str) -> u64 {
        self.counters.get(key)
    }

    fn register(&mut self, name: &'static str) -> Option<CounterId> {
        match self.counters.register(name) {
            Ok(id) => Some(id),
            Err(_) => {
                if !self.full_logged {
                    self.full_logged = true;
                    log::warn!(
                        "the counter table is full ({MAX_COUNTERS}): '{name}' and later \
                         counters are not kept"
                    );
                }
                None
            }
        }
    }

    /// The index in `files` of `line`'s file, registering its counters at its first line.
    fn file_of(&mut self, line: &Line) -> usize {
        if self
            .files
            .get(self.last)
            .is_some_and(|f| f.source == line.source())
        {
            return self.last;
        }
        let i = match self.files.iter().position(|f| f.source == line.source()) {
            Some(i) => i,
            None => {
                let lines = self.register(intern(&format!("{}:lines", line.path())));
                let names = self
                    .patterns
                    .as_ref()
                    .map_or(&[][..], |p| &p.names[..])
                    .to_vec();
                let patterns = names
                    .iter()
                    .map(|n| self.register(intern(&format!("{}:{n}", line.path()))))
                    .collect();
                self.files.push(PerFile {
                    source: line.source(),
                    lines,
                    patterns,
                });
                self.files.len() - 1
            }
        };
        self.last = i;
        i
    }

    fn count_line(&mut self, line: &Line) {
        self.counters.inc_id(self.lines, 1);
        let f = self.file_of(line);
        if let Some(id) = self.files[f].lines {
            self.counters.inc_id(id, 1);
        }
        let Some(p) = &self.patterns else { return };
        if !p.set.is_match(line.text()) {
            return;
        }
        let matched = p.set.matches(line.text());
        for i in matched.iter() {
            for id in [p.ids[i], self.files[f].patterns[i]].into_iter().flatten() {
                self.counters.inc_id(id, 1);
            }
        }
        if self.settings.log_matches {
            let names: Vec<&str> = matched.iter().map(|i| p.names[i]).collect();
            log::info!(
                "match [{}] {}: {}",
                names.join(", "),
                line.path(),
                String::from_utf8_lossy(line.text())
            );
        }
    }
}

impl<U: FollowEvents> Component<U, StdClock> for LineCounter<U> {
    fn name(&self) -> &'static str {
        "counter"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(Kind::user(U::LINE_KIND))
    }

    fn handle(&mut self, _: &mut Context<'_, U, StdClock>, event: &mut Event<U>) -> Flow {
        if let Event::User(e) = event {
            if let Some(line) = e.as_line() {
                self.count_line(line);
            }
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
        for i in 0..CounterSet::len(&self.counters) {
            let (key, value, _) = self.counters.entry(i);
            out.field(key, StateValue::U64(value));
        }
    }
}

/// The persistent state entry.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    counts: BTreeMap<String, u64>,
}

impl<U: FollowEvents> Service<U> for LineCounter<U> {
    fn config_key(&self) -> Option<&'static str> {
        Some(self.key)
    }

    fn configure(&mut self, config: &Config) -> zendaemon::Result<()> {
        let settings: CountSettings = config.component_or_default(self.key)?;
        self.apply(settings).map_err(|why| {
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
                "the persistent state of the counter is not understood ({e}): fix or remove \
                 its entry"
            ))
        })?;
        for (key, n) in &saved.counts {
            if let Some(id) = self.register(intern(key)) {
                self.counters.inc_id(id, *n);
            }
        }
        // The restored counts are the baseline of the first statistics interval.
        self.counters.rotate(0);
        Ok(())
    }

    fn persist(&self) -> Option<Value> {
        let counts = (0..CounterSet::len(&self.counters))
            .map(|i| {
                let (key, value, _) = self.counters.entry(i);
                (key.to_owned(), value)
            })
            .collect();
        serde_json::to_value(Saved { counts }).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::follow::{FileId, FollowEvent};

    const ID: FileId = FileId { dev: 1, ino: 2 };

    fn counter(patterns: &[(&str, &str)]) -> LineCounter<FollowEvent> {
        let mut c = LineCounter::new("count");
        c.apply(CountSettings {
            patterns: patterns
                .iter()
                .map(|(n, p)| ((*n).to_owned(), (*p).to_owned()))
                .collect(),
            log_matches: false,
        })
        .unwrap();
        c
    }

    fn feed(c: &mut LineCounter<FollowEvent>, source: u32, path: &str, lines: &[&[u8]]) {
        for (i, text) in lines.iter().enumerate() {
            c.count_line(&Line::new(source, path, ID, i as u64, text));
        }
    }

    #[test]
    fn counts_lines_and_matches_per_file_and_in_all() {
        let mut c = counter(&[("errors", "ERROR|FATAL"), ("start", "^start")]);
        feed(
            &mut c,
            0,
            "/a",
            &[b"start ERROR", b"ok", b"FATAL \xff not utf-8"],
        );
        feed(&mut c, 1, "/b", &[b"ERROR", b"a start"]);
        let expect = [
            ("lines", 5),
            ("errors", 3),
            ("start", 1),
            ("/a:lines", 3),
            ("/a:errors", 2),
            ("/a:start", 1),
            ("/b:lines", 2),
            ("/b:errors", 1),
            ("/b:start", 0),
        ];
        for (key, n) in expect {
            assert_eq!(c.count(key), n, "{key}");
        }
    }

    #[test]
    fn counts_survive_a_restart() {
        let mut c = counter(&[("errors", "ERROR")]);
        feed(&mut c, 0, "/a", &[b"ERROR", b"x"]);
        let saved = c.persist().unwrap();
        let mut d = counter(&[("errors", "ERROR")]);
        d.restore(Some(&saved)).unwrap();
        feed(&mut d, 7, "/a", &[b"ERROR"]);
        assert_eq!(
            (d.count("lines"), d.count("errors"), d.count("/a:lines")),
            (3, 2, 3)
        );
        let bad = serde_json::json!({"counts": {"lines": "many"}});
        assert!(counter(&[]).restore(Some(&bad)).is_err());
    }

    #[test]
    fn bad_patterns_are_refused_by_name_and_change_nothing() {
        let mut c = counter(&[("errors", "ERROR")]);
        for (name, pattern, why) in [
            ("broken", "(", "pattern 'broken'"),
            ("lines", "x", "'lines' is the name"),
            ("a:b", "x", "only letters"),
            ("", "x", "must not be empty"),
        ] {
            let mut settings = CountSettings::default();
            settings.patterns.insert(name.into(), pattern.into());
            let err = c.apply(settings).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        assert_eq!(c.settings().patterns.len(), 1);
        feed(&mut c, 0, "/a", &[b"ERROR"]);
        assert_eq!(c.count("errors"), 1);
    }

    #[test]
    fn interned_names_are_allocated_once() {
        let a = intern("/x:lines");
        let b = intern(&String::from("/x:lines"));
        assert!(std::ptr::eq(a, b));
    }
}
