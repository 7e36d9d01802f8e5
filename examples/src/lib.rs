//! Daemons built with zendaemon, and the reusable components they are made of.
//!
//! * [`follow`]: [`Follower`], a component that follows text files like `tail -F`
//!   (rotation, truncation, partial lines, restarts that neither skip nor repeat a line) and
//!   turns each line into an event.
//! * [`count`]: [`LineCounter`], a component that counts lines per file and the lines matching
//!   configured patterns, and logs the matching ones.
//!
//! The binaries: `demo` (pyzenkit's demo daemon) and `tail` (a [`Follower`] and a
//! [`LineCounter`] in one daemon). See the repository's README for a walkthrough.
#![warn(missing_docs, missing_debug_implementations)]

pub mod count;
pub mod follow;

pub use count::{CountSettings, LineCounter};
pub use follow::{FollowEvent, FollowEvents, FollowSettings, Follower, Line, StartAt};

/// The repository's README, whose walkthrough snippet is compiled as a doctest here so it
/// stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
