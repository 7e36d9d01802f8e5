#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod queue;
pub mod time;
pub mod timer;

pub use embedded_time;
pub use queue::{EventQueue, Next, QueueStats, ScheduleError, ScheduleErrorKind};
pub use time::{ManualClock, TickInt, Timeline};
pub use timer::{Fired, TimerError, TimerHandle, TimerQueue};
