//! What the kernel is dispatching right now, readable from another thread or an interrupt.
//!
//! A handler that never returns pins the loop, and the only code left to act is outside it: a
//! watchdog thread, a timer interrupt, a signal handler. To say *what* hung, that code needs
//! the component and the event kind in flight. An [`Activity`] holds them: the kernel it is
//! [attached](crate::Kernel::attach_activity) to stores the pair into it right before each
//! handler call and clears it after the event's pipeline, and anyone with a `&Activity` reads
//! it with [`Activity::current`].
//!
//! # Cost
//!
//! Both are one atomic word, stored and loaded with `Relaxed` ordering: a plain store per
//! handler plus one per event on x86 and ARM, no read-modify-write (so ARMv6-M, which has
//! none, is served too). A kernel without an attached `Activity` pays one test per event. The
//! reader gets a recent value, not one ordered with anything else: enough to name the culprit
//! of a hang, which by definition stays put.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::event::Kind;

/// Set while a handler runs; the component's index is in bits 16..24, the kind in 0..16.
const BUSY: u32 = 1 << 31;

/// The component and event kind the kernel is dispatching; see the module docs. Put it in a
/// `static`, or anywhere that outlives the kernel's borrow.
#[derive(Debug, Default)]
pub struct Activity(AtomicU32);

/// A handler call under way: [`Activity::current`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Dispatching {
    /// The component's index, in the order components were added to the kernel.
    pub component: u8,
    /// The kind of the event it handles.
    pub kind: Kind,
}

impl Activity {
    /// Nothing dispatched yet.
    pub const fn new() -> Self {
        Self(AtomicU32::new(0))
    }

    /// The handler call under way, or `None` between events (the kernel is idle, or its host
    /// runs its own code).
    pub fn current(&self) -> Option<Dispatching> {
        let v = self.0.load(Ordering::Relaxed);
        (v & BUSY != 0).then(|| Dispatching {
            component: (v >> 16) as u8,
            kind: Kind::from_index(v as u16),
        })
    }

    /// Component `component` is about to handle an event of `kind`.
    #[inline(always)]
    pub(crate) fn enter(&self, component: u8, kind: Kind) {
        let v = BUSY | (u32::from(component) << 16) | kind.index() as u32;
        self.0.store(v, Ordering::Relaxed);
    }

    /// The event's pipeline is over.
    #[inline(always)]
    pub(crate) fn leave(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_component_and_kind() {
        let a = Activity::new();
        assert_eq!(a.current(), None);
        for component in [0u8, 1, 200, 255] {
            for kind in [
                Kind::START,
                Kind::STOP,
                Kind::user(0),
                Kind::from_index(u16::MAX),
            ] {
                a.enter(component, kind);
                assert_eq!(a.current(), Some(Dispatching { component, kind }));
            }
        }
        a.leave();
        assert_eq!(a.current(), None);
    }
}
