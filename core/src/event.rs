//! Events: the user's own type beside the kernel's typed lifecycle events, routed by kind.
//!
//! pyzenkit routed events by name string and gave them loosely typed `args`. Here the user's
//! events are an ordinary Rust type that says which *kind* each value is (a small index), and
//! the kernel's own events are variants of [`Event`], so a handler matches on types, not
//! strings, and the routing table is an array indexed by kind.

use core::fmt;

/// The user's event type.
///
/// # Contract
///
/// * `KINDS` MUST be the number of distinct kinds, and `kind()` MUST return a value below it.
/// * `kind_name(k)` names kind `k` for logs, statistics and state dumps.
///
/// ```
/// use zendaemon_core::UserEvent;
///
/// #[derive(Debug, Clone)]
/// enum Job { Work(u32), Flush }
///
/// impl UserEvent for Job {
///     const KINDS: usize = 2;
///     fn kind(&self) -> usize {
///         match self { Job::Work(_) => 0, Job::Flush => 1 }
///     }
///     fn kind_name(kind: usize) -> &'static str {
///         ["work", "flush"].get(kind).copied().unwrap_or("?")
///     }
/// }
/// ```
pub trait UserEvent {
    /// How many kinds there are.
    const KINDS: usize;
    /// The kind of this value, below `KINDS`.
    fn kind(&self) -> usize;
    /// A name for a kind.
    fn kind_name(kind: usize) -> &'static str;
}

/// No user events: a kernel that only runs the lifecycle.
impl UserEvent for () {
    const KINDS: usize = 0;
    fn kind(&self) -> usize {
        0
    }
    fn kind_name(_: usize) -> &'static str {
        "?"
    }
}

/// An event as the kernel sees it: one of its lifecycle events, or one of the user's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event<U> {
    /// The first event of every run.
    Start,
    /// A graceful stop begins: components stop scheduling new work.
    Stop,
    /// The stop timeout ran out; the loop ends after this event's pipeline.
    Terminate,
    /// Re-read the configuration (the shell maps SIGHUP to it).
    Reload,
    /// Write a runlog (SIGUSR1, and periodically).
    SaveRunlog,
    /// Write a state dump (SIGUSR2).
    SaveState,
    /// Log statistics (periodically).
    LogStatistics,
    /// Save the persistent state (periodically, and when a component asks for it with
    /// [`Context::request_checkpoint`](crate::Context::request_checkpoint)).
    Checkpoint,
    /// One of the user's events.
    User(U),
}

/// Number of lifecycle event kinds; user kinds follow them.
pub const BUILTIN_KINDS: usize = 8;

/// The number of event kinds a kernel needs for the user event type `U`: the lifecycle kinds
/// plus `U::KINDS`. Spell a kernel's `K` with it, so a new lifecycle kind changes nothing in
/// your code:
///
/// ```
/// use zendaemon_core::{kinds, Kernel, ManualClock, Settings, UserEvent};
///
/// #[derive(Debug, Clone)]
/// struct Tick;
/// impl UserEvent for Tick {
///     const KINDS: usize = 1;
///     fn kind(&self) -> usize { 0 }
///     fn kind_name(_: usize) -> &'static str { "tick" }
/// }
///
/// let kernel = Kernel::<'_, Tick, ManualClock, 1, { kinds::<Tick>() }, 1, 4, 4>::new(Settings::default());
/// # let _ = kernel;
/// ```
pub const fn kinds<U: UserEvent>() -> usize {
    BUILTIN_KINDS + U::KINDS
}

/// The routing key of an event: an index into the kernel's routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Kind(u16);

impl Kind {
    /// [`Event::Start`].
    pub const START: Kind = Kind(0);
    /// [`Event::Stop`].
    pub const STOP: Kind = Kind(1);
    /// [`Event::Terminate`].
    pub const TERMINATE: Kind = Kind(2);
    /// [`Event::Reload`].
    pub const RELOAD: Kind = Kind(3);
    /// [`Event::SaveRunlog`].
    pub const SAVE_RUNLOG: Kind = Kind(4);
    /// [`Event::SaveState`].
    pub const SAVE_STATE: Kind = Kind(5);
    /// [`Event::LogStatistics`].
    pub const LOG_STATISTICS: Kind = Kind(6);
    /// [`Event::Checkpoint`].
    pub const CHECKPOINT: Kind = Kind(7);

    /// The kind of user event kind `k` (as returned by [`UserEvent::kind`]).
    #[inline]
    pub const fn user(k: usize) -> Kind {
        Kind((BUILTIN_KINDS + k) as u16)
    }

    /// The kind with this routing-table index (the inverse of [`Kind::index`]).
    #[inline]
    pub(crate) const fn from_index(index: u16) -> Kind {
        Kind(index)
    }

    /// The index into the routing table.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// True for the kernel's lifecycle kinds.
    #[inline]
    pub const fn is_builtin(self) -> bool {
        self.index() < BUILTIN_KINDS
    }

    /// The kind's name: pyzenkit's event names for the lifecycle kinds.
    pub fn name<U: UserEvent>(self) -> &'static str {
        match self.index() {
            0 => "start",
            1 => "stop",
            2 => "terminate",
            3 => "reload",
            4 => "save_runlog",
            5 => "save_state",
            6 => "log_statistics",
            7 => "checkpoint",
            k => U::kind_name(k - BUILTIN_KINDS),
        }
    }
}

impl<U: UserEvent> Event<U> {
    /// This event's routing kind.
    #[inline]
    pub fn kind(&self) -> Kind {
        // User events first: they are the common case, and a separate test keeps the
        // builtin arms (a jump table) off their path.
        if let Event::User(u) = self {
            return Kind::user(u.kind());
        }
        match self {
            Event::Start => Kind::START,
            Event::Stop => Kind::STOP,
            Event::Terminate => Kind::TERMINATE,
            Event::Reload => Kind::RELOAD,
            Event::SaveRunlog => Kind::SAVE_RUNLOG,
            Event::SaveState => Kind::SAVE_STATE,
            Event::LogStatistics => Kind::LOG_STATISTICS,
            Event::Checkpoint => Kind::CHECKPOINT,
            Event::User(_) => unreachable!("user events returned above"),
        }
    }
}

/// A user event becomes [`Event::User`] (the kernel's way of putting one into its queue).
impl<U> From<U> for Event<U> {
    fn from(user: U) -> Self {
        Event::User(user)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kind {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone)]
    enum Ev {
        A,
        B,
    }
    impl UserEvent for Ev {
        const KINDS: usize = 2;
        fn kind(&self) -> usize {
            match self {
                Ev::A => 0,
                Ev::B => 1,
            }
        }
        fn kind_name(kind: usize) -> &'static str {
            ["a", "b"][kind]
        }
    }

    #[test]
    fn kinds_and_names() {
        assert_eq!(Event::<Ev>::Start.kind(), Kind::START);
        assert_eq!(Event::User(Ev::B).kind(), Kind::user(1));
        assert_eq!(Kind::user(1).index(), BUILTIN_KINDS + 1);
        assert_eq!(Kind::user(0).name::<Ev>(), "a");
        assert_eq!(Kind::SAVE_RUNLOG.name::<Ev>(), "save_runlog");
        assert!(Kind::LOG_STATISTICS.is_builtin());
        assert!(Kind::CHECKPOINT.is_builtin());
        assert_eq!(Event::<Ev>::Checkpoint.kind(), Kind::CHECKPOINT);
        assert_eq!(Kind::CHECKPOINT.name::<Ev>(), "checkpoint");
        assert_eq!(Kind::user(0).index(), kinds::<Ev>() - 2);
        assert_eq!(kinds::<()>(), BUILTIN_KINDS);
        assert!(!Event::User(Ev::A).kind().is_builtin());
    }
}

/// Tests that close gaps a mutation run found (issue 16; see TESTING.md).
#[cfg(test)]
mod strength {
    use super::*;

    #[test]
    fn the_unit_event_type_has_no_kinds() {
        assert_eq!(<() as UserEvent>::KINDS, 0);
        assert_eq!(().kind(), 0);
        assert_eq!(<() as UserEvent>::kind_name(0), "?");
        assert_eq!(Event::<()>::Stop.kind(), Kind::STOP);
    }

    #[test]
    fn every_lifecycle_kind_has_its_name_and_index() {
        let kinds = [
            (Event::<()>::Start, Kind::START, "start"),
            (Event::Stop, Kind::STOP, "stop"),
            (Event::Terminate, Kind::TERMINATE, "terminate"),
            (Event::Reload, Kind::RELOAD, "reload"),
            (Event::SaveRunlog, Kind::SAVE_RUNLOG, "save_runlog"),
            (Event::SaveState, Kind::SAVE_STATE, "save_state"),
            (Event::LogStatistics, Kind::LOG_STATISTICS, "log_statistics"),
            (Event::Checkpoint, Kind::CHECKPOINT, "checkpoint"),
        ];
        assert_eq!(kinds.len(), BUILTIN_KINDS);
        for (i, (event, kind, name)) in kinds.into_iter().enumerate() {
            assert_eq!(event.kind(), kind);
            assert_eq!(kind.index(), i);
            assert!(kind.is_builtin());
            assert_eq!(kind.name::<()>(), name);
        }
        assert_eq!(Kind::user(0).index(), BUILTIN_KINDS);
        assert_eq!(Kind::user(3).index(), BUILTIN_KINDS + 3);
        assert!(!Kind::user(0).is_builtin());
        assert_eq!(std::format!("{}", Kind::user(2)), "kind 10");
        assert_eq!(Event::from(5u8), Event::User(5u8));
    }

    #[test]
    fn user_kind_names_come_from_the_user_type() {
        #[derive(Debug)]
        struct Named;
        impl UserEvent for Named {
            const KINDS: usize = 3;
            fn kind(&self) -> usize {
                2
            }
            fn kind_name(kind: usize) -> &'static str {
                ["zero", "one", "two"][kind]
            }
        }
        assert_eq!(Kind::user(2).name::<Named>(), "two");
        assert_eq!(Kind::user(1).name::<Named>(), "one");
        assert_eq!(Event::User(Named).kind(), Kind::user(2));
    }
}
