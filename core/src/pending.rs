//! Posting into the kernel from interrupt handlers, Unix signal handlers and other threads.
//!
//! Two mechanisms, for two kinds of poster:
//!
//! * [`Requests`]: counters for the lifecycle requests (stop, terminate, reload, save runlog,
//!   save state, checkpoint). Posting is a single atomic add where the target has atomic read-modify-write
//!   (x86_64, ARMv7-M): lock-free, so safe from a **Unix signal handler**, which must never take
//!   a lock the interrupted code may hold. On targets without it (ARMv6-M) posting runs in a
//!   `critical-section`, which on a single-core MCU masks interrupts: safe from any **ISR**.
//!   Reading is an atomic load everywhere.
//!   Counting (not just flagging) keeps every request: three SIGINTs are three stop requests.
//! * [`Inbox`]: a small fixed queue of full user events, behind a `critical-section` mutex, for
//!   ISRs and threads. Do not post into it from a Unix signal handler: on std targets the
//!   critical section is a process-wide lock. (The std shell posts only requests from its
//!   handlers.)
//!
//! The kernel drains both at the start of every step: requests become front-of-queue events,
//! inbox events join the back of the sequential queue in the order they were posted (as many as
//! fit; the rest wait in the inbox, nothing is lost). A step with nothing posted finds that out
//! with one atomic load per mechanism (a total of posts, a "not empty" flag): no critical
//! section, no read of each counter.

use core::cell::RefCell;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use critical_section::Mutex;
use heapless::Deque;

/// A lifecycle request an interrupt or signal handler may post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Request {
    /// Graceful stop (SIGINT). The third one ends the loop at once.
    Stop,
    /// Immediate stop (SIGTERM).
    Terminate,
    /// Reload the configuration (SIGHUP).
    Reload,
    /// Write a runlog (SIGUSR1).
    SaveRunlog,
    /// Write a state dump (SIGUSR2).
    SaveState,
    /// Save the persistent state now (a checkpoint).
    Checkpoint,
}

impl Request {
    /// Every request, in the order the kernel handles them within one step.
    pub const ALL: [Request; REQUESTS] = [
        Request::Terminate,
        Request::Stop,
        Request::Reload,
        Request::SaveRunlog,
        Request::SaveState,
        Request::Checkpoint,
    ];

    const fn index(self) -> usize {
        match self {
            Request::Stop => 0,
            Request::Terminate => 1,
            Request::Reload => 2,
            Request::SaveRunlog => 3,
            Request::SaveState => 4,
            Request::Checkpoint => 5,
        }
    }
}

const REQUESTS: usize = 6;

/// A monotonically increasing post counter, shared with handlers. Reading it is a plain
/// atomic load on every target (ARMv6-M has atomic loads and stores, just no
/// read-modify-write); posting is an atomic add where the target has one, else a load and a
/// store inside a critical section, which excludes every other poster.
struct PostCounter(AtomicU32);

impl PostCounter {
    const fn new() -> Self {
        Self(AtomicU32::new(0))
    }

    #[cfg(target_has_atomic = "32")]
    #[inline]
    fn post(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    #[cfg(not(target_has_atomic = "32"))]
    #[inline]
    fn post(&self) {
        critical_section::with(|_| {
            let n = self.0.load(Ordering::Relaxed);
            self.0.store(n.wrapping_add(1), Ordering::Release);
        });
    }

    #[inline]
    fn read(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

/// Lifecycle requests posted from handlers; see the module docs. Put it in a `static`.
pub struct Requests {
    posted: [PostCounter; REQUESTS],
    /// Posts of any request: the reader's cheap "anything new?" test.
    total: PostCounter,
}

impl core::fmt::Debug for Requests {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut l = f.debug_map();
        for r in Request::ALL {
            l.entry(&r, &self.posted[r.index()].read());
        }
        l.finish()
    }
}

impl Default for Requests {
    fn default() -> Self {
        Self::new()
    }
}

impl Requests {
    /// No requests yet.
    pub const fn new() -> Self {
        Self {
            posted: [const { PostCounter::new() }; REQUESTS],
            total: PostCounter::new(),
        }
    }

    /// Posts a request. Lock-free where the target has atomic add (see the module docs).
    pub fn post(&self, request: Request) {
        // The request's own count first: a reader that sees the new total (acquire) then
        // sees this count too.
        self.posted[request.index()].post();
        self.total.post();
    }

    /// Total posts of `request` so far (wrapping). The reader keeps its own count of what it
    /// has taken; see [`RequestReader`].
    pub fn posted(&self, request: Request) -> u32 {
        self.posted[request.index()].read()
    }
}

/// The kernel's side of [`Requests`]: remembers how many of each it has taken.
#[derive(Debug, Default, Clone)]
pub struct RequestReader {
    taken: [u32; REQUESTS],
    /// The total of posts when the reader last caught up.
    seen_total: u32,
}

impl RequestReader {
    /// Nothing taken yet.
    pub const fn new() -> Self {
        Self {
            taken: [0; REQUESTS],
            seen_total: 0,
        }
    }

    /// True when anything was posted since the last [`catch_up`](Self::catch_up): one load.
    #[inline]
    pub fn has_new(&self, requests: &Requests) -> bool {
        requests.total.read() != self.seen_total
    }

    /// Notes the current total of posts; call it before [`take`](Self::take)ing the
    /// requests. A post that lands after it moves the total again, so
    /// [`has_new`](Self::has_new) reports it even if this round of `take`s already counted it.
    pub fn catch_up(&mut self, requests: &Requests) {
        self.seen_total = requests.total.read();
    }

    /// How many new posts of `request` arrived since the last call, and takes them.
    pub fn take(&mut self, requests: &Requests, request: Request) -> u32 {
        let posted = requests.posted(request);
        let taken = &mut self.taken[request.index()];
        let new = posted.wrapping_sub(*taken);
        *taken = posted;
        new
    }
}

/// A fixed queue of `N` user events that ISRs and threads post into. Put it in a `static`.
pub struct Inbox<U, const N: usize> {
    events: Mutex<RefCell<Deque<U, N>>>,
    /// Set while events wait; written inside the critical section, read without it.
    waiting: AtomicBool,
}

impl<U, const N: usize> core::fmt::Debug for Inbox<U, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inbox").field("len", &self.len()).finish()
    }
}

impl<U, const N: usize> Default for Inbox<U, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<U, const N: usize> Inbox<U, N> {
    /// An empty inbox.
    pub const fn new() -> Self {
        Self {
            events: Mutex::new(RefCell::new(Deque::new())),
            waiting: AtomicBool::new(false),
        }
    }

    /// Posts an event; a full inbox hands it back.
    pub fn post(&self, event: U) -> Result<(), U> {
        critical_section::with(|cs| {
            let pushed = self.events.borrow_ref_mut(cs).push_back(event);
            if pushed.is_ok() {
                self.waiting.store(true, Ordering::Release);
            }
            pushed
        })
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        critical_section::with(|cs| self.events.borrow_ref(cs).len())
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`Mailbox::take_one`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// An event was taken.
    Taken,
    /// Nothing was waiting.
    Empty,
    /// The consumer refused the oldest event; it stays first in the inbox.
    Refused,
}

/// The kernel's view of an inbox, whatever its capacity (object-safe).
pub trait Mailbox<U> {
    /// Offers the oldest event to `accept`, which hands it back to refuse it.
    /// Called with the critical section held, so keep `accept` short.
    fn take_one(&self, accept: &mut dyn FnMut(U) -> Result<(), U>) -> Take;

    /// False only when nothing waits; cheap (no critical section), so the kernel asks it
    /// every step before taking anything.
    fn may_have_events(&self) -> bool;
}

impl<U, const N: usize> Mailbox<U> for Inbox<U, N> {
    fn take_one(&self, accept: &mut dyn FnMut(U) -> Result<(), U>) -> Take {
        critical_section::with(|cs| {
            let mut events = self.events.borrow_ref_mut(cs);
            let Some(event) = events.pop_front() else {
                return Take::Empty;
            };
            match accept(event) {
                Ok(()) => {
                    if events.is_empty() {
                        self.waiting.store(false, Ordering::Relaxed);
                    }
                    Take::Taken
                }
                Err(back) => {
                    // Cannot fail: we just made room.
                    let _ = events.push_front(back);
                    Take::Refused
                }
            }
        })
    }

    #[inline]
    fn may_have_events(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_tells_whether_anything_is_new() {
        let requests = Requests::new();
        let mut reader = RequestReader::new();
        assert!(!reader.has_new(&requests));
        requests.post(Request::Reload);
        assert!(reader.has_new(&requests));
        reader.catch_up(&requests);
        assert!(!reader.has_new(&requests));
        // Posted between the catch-up and the takes: taken now, and announced once more
        // (the next round then finds nothing, which is harmless; missing it would not be).
        requests.post(Request::Stop);
        assert_eq!(reader.take(&requests, Request::Reload), 1);
        assert_eq!(reader.take(&requests, Request::Stop), 1);
        assert!(reader.has_new(&requests));
        reader.catch_up(&requests);
        assert_eq!(reader.take(&requests, Request::Stop), 0);
        assert!(!reader.has_new(&requests));
    }

    #[test]
    fn the_inbox_flag_follows_its_contents() {
        let inbox: Inbox<u32, 2> = Inbox::new();
        assert!(!inbox.may_have_events());
        inbox.post(1).unwrap();
        inbox.post(2).unwrap();
        assert_eq!(inbox.post(3), Err(3));
        assert!(inbox.may_have_events());
        assert_eq!(inbox.take_one(&mut |_| Ok(())), Take::Taken);
        assert!(inbox.may_have_events());
        assert_eq!(inbox.take_one(&mut Err), Take::Refused);
        assert!(inbox.may_have_events());
        assert_eq!(inbox.take_one(&mut |_| Ok(())), Take::Taken);
        assert!(!inbox.may_have_events());
        assert_eq!(inbox.take_one(&mut |_| Ok(())), Take::Empty);
    }

    #[test]
    fn requests_are_counted_not_flagged() {
        let requests = Requests::new();
        let mut reader = RequestReader::new();
        requests.post(Request::Stop);
        requests.post(Request::Stop);
        requests.post(Request::SaveState);
        assert_eq!(reader.take(&requests, Request::Stop), 2);
        assert_eq!(reader.take(&requests, Request::Stop), 0);
        assert_eq!(reader.take(&requests, Request::SaveState), 1);
        assert_eq!(reader.take(&requests, Request::Reload), 0);
        requests.post(Request::Stop);
        assert_eq!(reader.take(&requests, Request::Stop), 1);
    }

    #[test]
    fn inbox_keeps_order_and_hands_back_when_full() {
        let inbox = Inbox::<u32, 2>::new();
        assert_eq!(inbox.post(1), Ok(()));
        assert_eq!(inbox.post(2), Ok(()));
        assert_eq!(inbox.post(3), Err(3));
        let mut got = std::vec::Vec::new();
        // A consumer that refuses the second event leaves it in place.
        let mut take = |e| {
            got.push(e);
            Ok(())
        };
        assert_eq!(inbox.take_one(&mut take), Take::Taken);
        assert_eq!(inbox.take_one(&mut |e| Err(e)), Take::Refused);
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox.take_one(&mut take), Take::Taken);
        assert_eq!(inbox.take_one(&mut take), Take::Empty);
        assert_eq!(got, [1, 2]);
        assert!(inbox.is_empty());
    }

    #[test]
    fn posting_from_other_threads_loses_nothing() {
        static REQUESTS: Requests = Requests::new();
        static INBOX: Inbox<u32, 4096> = Inbox::new();
        std::thread::scope(|s| {
            for t in 0..4u32 {
                s.spawn(move || {
                    for i in 0..1000 {
                        REQUESTS.post(Request::SaveRunlog);
                        INBOX.post(t * 1000 + i).unwrap();
                    }
                });
            }
        });
        let mut reader = RequestReader::new();
        assert_eq!(reader.take(&REQUESTS, Request::SaveRunlog), 4000);
        let mut seen = std::vec::Vec::new();
        while INBOX.take_one(&mut |e| {
            seen.push(e);
            Ok(())
        }) == Take::Taken
        {
            assert!(seen.len() <= 4000, "the inbox gave more than was posted");
        }
        assert_eq!(seen.len(), 4000);
        // Each thread's events stay in the order it posted them.
        for t in 0..4u32 {
            let mine: std::vec::Vec<_> = seen.iter().filter(|e| **e / 1000 == t).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]));
        }
    }
}

/// Tests that close gaps a mutation run found (issue 16; see TESTING.md): predicates asserted
/// both ways, and the `Debug` output a host logs.
#[cfg(test)]
mod strength {
    use super::*;

    #[test]
    fn inbox_len_and_is_empty_follow_posts_and_takes() {
        let inbox = Inbox::<u32, 3>::new();
        assert!(inbox.is_empty());
        assert_eq!(inbox.len(), 0);
        inbox.post(1).unwrap();
        assert!(!inbox.is_empty());
        assert_eq!(inbox.len(), 1);
        inbox.post(2).unwrap();
        assert_eq!(inbox.len(), 2);
        assert_eq!(inbox.take_one(&mut |_| Ok(())), Take::Taken);
        assert!(!inbox.is_empty());
        assert_eq!(inbox.take_one(&mut |_| Ok(())), Take::Taken);
        assert!(inbox.is_empty());
        assert!(Inbox::<u32, 1>::default().is_empty());
    }

    #[test]
    fn debug_output_shows_counts() {
        let inbox = Inbox::<u32, 3>::new();
        inbox.post(9).unwrap();
        inbox.post(9).unwrap();
        assert_eq!(std::format!("{inbox:?}"), "Inbox { len: 2 }");
        let requests = Requests::default();
        requests.post(Request::Reload);
        requests.post(Request::Stop);
        requests.post(Request::Stop);
        assert_eq!(
            std::format!("{requests:?}"),
            "{Terminate: 0, Stop: 2, Reload: 1, SaveRunlog: 0, SaveState: 0, Checkpoint: 0}"
        );
    }

    #[test]
    fn every_request_has_its_own_counter() {
        let requests = Requests::new();
        let mut reader = RequestReader::new();
        for (i, &r) in Request::ALL.iter().enumerate() {
            for _ in 0..=i {
                requests.post(r);
            }
        }
        for (i, &r) in Request::ALL.iter().enumerate() {
            assert_eq!(requests.posted(r), i as u32 + 1, "{r:?}");
        }
        assert!(reader.has_new(&requests));
        reader.catch_up(&requests);
        assert!(!reader.has_new(&requests));
        for (i, &r) in Request::ALL.iter().enumerate() {
            assert_eq!(reader.take(&requests, r), i as u32 + 1, "{r:?}");
            assert_eq!(reader.take(&requests, r), 0, "{r:?}");
        }
    }
}
