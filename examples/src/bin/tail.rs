//! `tail`: follows text files like `tail -F`, counts their lines and the lines matching
//! patterns, and logs the matching lines.
//!
//! Two reusable components of this package, in one daemon:
//!
//! * [`Follower`] (section `"tail"`): follows the files, survives rotation and truncation,
//!   emits a `line` event per line, and keeps its positions in the persistent state so a
//!   restart resumes where the previous run stopped.
//! * [`LineCounter`] (section `"count"`): counts lines and pattern matches per file and in
//!   all, keeps the counts in the persistent state, logs each matching line.
//!
//! ```json
//! {
//!     "tail": { "files": ["/var/log/syslog", "/var/log/auth.log"], "poll_ms": 200 },
//!     "count": { "patterns": { "errors": "(?i)error|fail", "sshd": "sshd\\[" } }
//! }
//! ```
//!
//! Statistics (the counters' rates) are logged every 60 seconds unless `stats_interval` says
//! otherwise; everything else is the zendaemon shell's (`tail --help` shows it all, with
//! tail's own defaults).

use std::process::ExitCode;

use zendaemon::Daemon;
use zendaemon_examples::{FollowEvent, Follower, LineCounter};

fn main() -> ExitCode {
    let mut follower = Follower::<FollowEvent>::new("tail");
    let mut counter = LineCounter::<FollowEvent>::new("count");
    Daemon::<FollowEvent>::new("tail")
        .about(
            "tail: follows files like `tail -F`, counts their lines and the lines matching \
             patterns, logs the matching lines; resumes where it stopped after a restart or a \
             crash. Section 'tail': files, poll_ms, start_at, max_line, batch, rotated; \
             section 'count': patterns, log_matches.",
        )
        .default_setting("stats_interval", 60)
        .component(&mut follower)
        .component(&mut counter)
        .run()
}
