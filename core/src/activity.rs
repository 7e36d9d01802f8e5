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
//! Two small atomics, stored and loaded with `Relaxed` ordering, no read-modify-write (so
//! ARMv6-M, which has none, is served too): per event one store of the kind before the
//! pipeline and one after it, per handler one store of the component. On x86 and ARM each is a
//! plain store. A kernel without an attached `Activity` runs a separate copy of the pipeline
//! loop without the stores: one test per event. The reader gets recent values, not ones
//! ordered with anything else (the kind may belong to the next event while the loop moves
//! on): enough to name the culprit of a hang, which by definition stays put.

use core::sync::atomic::{AtomicU16, AtomicU8, Ordering};

use crate::event::Kind;

/// The component and event kind the kernel is dispatching; see the module docs. Put it in a
/// `static`, or anywhere that outlives the kernel's borrow.
#[derive(Debug, Default)]
pub struct Activity {
    /// The kind of the event whose pipeline runs (or ran last).
    kind: AtomicU16,
    /// The index of the component whose handler runs, plus one; 0 between events.
    component: AtomicU8,
}

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
        Self {
            kind: AtomicU16::new(0),
            component: AtomicU8::new(0),
        }
    }

    /// The handler call under way, or `None` between events (the kernel is idle, or its host
    /// runs its own code).
    pub fn current(&self) -> Option<Dispatching> {
        let plus_one = self.component.load(Ordering::Relaxed);
        let kind = Kind::from_index(self.kind.load(Ordering::Relaxed));
        plus_one
            .checked_sub(1)
            .map(|component| Dispatching { component, kind })
    }

    /// The pipeline of an event of `kind` begins.
    #[inline(always)]
    pub(crate) fn begin(&self, kind: Kind) {
        self.kind.store(kind.index() as u16, Ordering::Relaxed);
    }

    /// Component `component` (at most 254: the kernel holds at most 255 components, indices
    /// 0 to 254) is about to handle the event.
    #[inline(always)]
    pub(crate) fn enter(&self, component: u8) {
        self.component
            .store(component.wrapping_add(1), Ordering::Relaxed);
    }

    /// The event's pipeline is over.
    #[inline(always)]
    pub(crate) fn end(&self) {
        self.component.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_component_and_kind() {
        let a = Activity::new();
        assert_eq!(a.current(), None);
        for component in [0u8, 1, 200, 254] {
            for kind in [
                Kind::START,
                Kind::STOP,
                Kind::user(0),
                Kind::from_index(u16::MAX),
            ] {
                a.begin(kind);
                a.enter(component);
                assert_eq!(a.current(), Some(Dispatching { component, kind }));
            }
        }
        a.end();
        assert_eq!(a.current(), None);
    }
}
