#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod activity;
pub mod component;
pub mod event;
#[cfg(feature = "fugit")]
pub mod fugit;
pub mod host;
pub mod kernel;
pub mod pending;
pub mod queue;
#[cfg(feature = "serde")]
pub mod snapshot;
pub mod stats;
pub mod time;
pub mod timer;

pub use activity::{Activity, Dispatching};
pub use component::{Component, Context, Flow, RouteError, Routes, StateValue, StateVisitor};
pub use embedded_time;
pub use event::{kinds, Event, Kind, UserEvent};
pub use host::HostQueue;
pub use kernel::{EndReason, Idle, Kernel, Periodic, Run, Settings, StartError, Step, StepError};
pub use pending::{Inbox, Mailbox, Request, Requests};
pub use queue::{EventQueue, Next, QueueStats, ScheduleError, ScheduleErrorKind};
pub use stats::{CounterId, CounterSet, Counters, KernelStats, Lateness, Rate};
pub use time::{Delay, ManualClock, TickInt, Timeline};
pub use timer::{Fired, TimerError, TimerHandle, TimerQueue};
