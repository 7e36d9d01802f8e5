//! Daemons built with zendaemon, and the reusable components they are made of.
//!
//! * [`follow`]: [`Follower`], a component that follows text files like `tail -F`
//!   (rotation, truncation, partial lines, restarts that neither skip nor repeat a line) and
//!   turns each line into an event.
//! * [`count`]: [`LineCounter`], a component that counts lines per file and the lines matching
//!   configured patterns, and logs the matching ones.
//! * [`echo`]: [`Echo`], a TCP echo service: the socket taken as root (bound, or from systemd's
//!   socket activation), served as the service user.
//!
//! The binaries: `demo` (pyzenkit's demo daemon), `tail` (a [`Follower`] and a
//! [`LineCounter`] in one daemon) and `echo` (an [`Echo`]). See the repository's README for a walkthrough.
#![warn(missing_docs, missing_debug_implementations)]

pub mod count;
pub mod echo;
pub mod follow;

pub use count::{CountSettings, LineCounter};
pub use echo::{Echo, EchoEvent, EchoEvents, EchoSettings};
pub use follow::{FollowEvent, FollowEvents, FollowSettings, Follower, Line, StartAt};

/// The repository's README, whose walkthrough snippet is compiled as a doctest here so it
/// stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
