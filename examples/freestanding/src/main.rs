//! zendaemon-core in a static x86_64 Linux program with neither std nor libc.
//!
//! * `_start` is ours (a naked function); the kernel talks to Linux through four raw system
//!   calls in [`sys`]: `write`, `clock_gettime`, `clock_nanosleep` and `exit_group`.
//! * The kernel's clock reads `CLOCK_MONOTONIC` in microseconds ([`Monotonic`]).
//! * Three components: a ticker on a 2 ms periodic timer that asks for a stop after its tenth
//!   tick, a producer that turns every tick into two units of work and arms a 5 ms one-shot
//!   timer at start, and a consumer that counts the work.
//! * Between events the program sleeps until the kernel's next deadline with
//!   `clock_nanosleep(TIMER_ABSTIME)`: no polling.
//!
//! It prints a summary line and exits with 0 only if every count came out as expected and no
//! timer fired early, 1 otherwise; a panic exits with 101.
//!
//! `unsafe` is where nothing else will do, each block with its `// SAFETY:` reasoning: the
//! system calls ([`sys`]), `_start`, and the memory functions libc would have provided
//! ([`mem`]). The kernel itself has none.

#![no_std]
#![no_main]

use core::fmt::Write as _;

use embedded_time::duration::Milliseconds;
use embedded_time::fraction::Fraction;
use embedded_time::{Clock, Instant};
use zendaemon_core::{
    Component, Context, CounterId, CounterSet, Counters, EndReason, Event, Flow, Kernel, Kind,
    RouteError, Routes, Settings, Step, TimerHandle, UserEvent,
};

/// Raw Linux system calls for x86_64.
mod sys {
    use core::arch::asm;

    const SYS_WRITE: usize = 1;
    const SYS_CLOCK_GETTIME: usize = 228;
    const SYS_CLOCK_NANOSLEEP: usize = 230;
    const SYS_EXIT_GROUP: usize = 231;
    const CLOCK_MONOTONIC: usize = 1;
    const TIMER_ABSTIME: usize = 1;
    const EINTR: isize = 4;

    /// The kernel's `struct timespec` on x86_64.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Timespec {
        pub sec: i64,
        pub nsec: i64,
    }

    /// Writes all of `buf` to `fd`; gives up on an error (there is nowhere to report it).
    pub fn write_all(fd: u32, mut buf: &[u8]) {
        while !buf.is_empty() {
            let ret: isize;
            // SAFETY: write(2) reads `buf.len()` bytes from `buf`, which is a live slice; the
            // syscall clobbers only rax (the result), rcx and r11, all declared.
            unsafe {
                asm!(
                    "syscall",
                    inlateout("rax") SYS_WRITE => ret,
                    in("rdi") fd,
                    in("rsi") buf.as_ptr(),
                    in("rdx") buf.len(),
                    lateout("rcx") _,
                    lateout("r11") _,
                    options(nostack, readonly),
                );
            }
            match ret {
                n if n > 0 => buf = &buf[n as usize..],
                n if n == -EINTR => {}
                _ => return,
            }
        }
    }

    /// `CLOCK_MONOTONIC` now.
    pub fn monotonic() -> Timespec {
        let mut ts = Timespec::default();
        let ret: isize;
        // SAFETY: clock_gettime(2) writes one `struct timespec` through the pointer, which
        // points to `ts`, a live, writable, properly laid out (`repr(C)`) value.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_CLOCK_GETTIME => ret,
                in("rdi") CLOCK_MONOTONIC,
                in("rsi") &mut ts as *mut Timespec,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        // CLOCK_MONOTONIC with a valid pointer cannot fail.
        assert!(ret == 0, "clock_gettime failed: {ret}");
        ts
    }

    /// Sleeps until `CLOCK_MONOTONIC` reaches `at` (at once if it already has).
    pub fn sleep_until(at: Timespec) {
        loop {
            let ret: isize;
            // SAFETY: clock_nanosleep(2) only reads the `struct timespec` behind the third
            // argument, which points to `at`; the fourth (remaining time) is null, which
            // TIMER_ABSTIME allows.
            unsafe {
                asm!(
                    "syscall",
                    inlateout("rax") SYS_CLOCK_NANOSLEEP => ret,
                    in("rdi") CLOCK_MONOTONIC,
                    in("rsi") TIMER_ABSTIME,
                    in("rdx") &at as *const Timespec,
                    in("r10") 0usize,
                    lateout("rcx") _,
                    lateout("r11") _,
                    options(nostack, readonly),
                );
            }
            // clock_nanosleep returns the error number itself, positive.
            if ret != EINTR {
                return;
            }
        }
    }

    /// Ends the process with `code`.
    pub fn exit(code: i32) -> ! {
        // SAFETY: exit_group(2) takes a plain integer and does not return.
        unsafe {
            asm!(
                "syscall",
                in("rax") SYS_EXIT_GROUP,
                in("rdi") code,
                options(noreturn, nostack),
            );
        }
    }
}

/// The memory functions that compiled code calls for copies, fills and comparisons. libc
/// would provide them; Rust's `compiler_builtins` does so only on targets without a libc, so
/// here we must. `rep movsb` / `rep stosb` are short, and fast on any x86_64 of the last ten
/// years (ERMSB); being assembly, they cannot be turned back into calls to themselves.
mod mem {
    use core::arch::asm;

    /// C's `memcpy`.
    ///
    /// # Safety
    ///
    /// `src` is readable and `dest` writable for `n` bytes, and the two do not overlap.
    // SAFETY: the one definition of this C symbol in the program (there is no libc).
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: the caller guarantees both ranges; `rep movsb` copies exactly `n` bytes
        // upwards (the ABI guarantees the direction flag is clear at a call).
        unsafe {
            asm!(
                "rep movsb",
                inout("rcx") n => _,
                inout("rdi") dest => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags),
            );
        }
        dest
    }

    /// C's `memmove`.
    ///
    /// # Safety
    ///
    /// `src` is readable and `dest` writable for `n` bytes; they may overlap.
    // SAFETY: the one definition of this C symbol in the program (there is no libc).
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        if (dest as usize).wrapping_sub(src as usize) >= n {
            // `dest` is below `src` or past its end: copying upwards never overwrites a
            // byte before it is read.
            // SAFETY: as for `memcpy`, and the overlap is harmless in this direction.
            return unsafe { memcpy(dest, src, n) };
        }
        // `dest` lies inside `src..src + n`: copy downwards, from the last byte.
        // SAFETY: the caller guarantees both ranges; with the direction flag set, `rep movsb`
        // copies exactly `n` bytes from the last one down, and `cld` restores the flag the ABI
        // expects.
        unsafe {
            asm!(
                "std",
                "rep movsb",
                "cld",
                inout("rcx") n => _,
                inout("rdi") dest.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(nostack),
            );
        }
        dest
    }

    /// C's `memset`.
    ///
    /// # Safety
    ///
    /// `dest` is writable for `n` bytes.
    // SAFETY: the one definition of this C symbol in the program (there is no libc).
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
        // SAFETY: the caller guarantees the range; `rep stosb` stores exactly `n` bytes
        // upwards.
        unsafe {
            asm!(
                "rep stosb",
                inout("rcx") n => _,
                inout("rdi") dest => _,
                in("al") c as u8,
                options(nostack, preserves_flags),
            );
        }
        dest
    }

    /// C's `memcmp`.
    ///
    /// # Safety
    ///
    /// `a` and `b` are readable for `n` bytes.
    // SAFETY: the one definition of this C symbol in the program (there is no libc).
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        for i in 0..n {
            // SAFETY: `i < n`, and the caller guarantees `n` readable bytes behind each.
            let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
            if x != y {
                return i32::from(x) - i32::from(y);
            }
        }
        0
    }

    /// C's `bcmp`: zero when equal (LLVM calls it for equality tests).
    ///
    /// # Safety
    ///
    /// As for [`memcmp`].
    // SAFETY: the one definition of this C symbol in the program (there is no libc).
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: the same contract.
        unsafe { memcmp(a, b, n) }
    }
}

/// The process entry point, where Linux jumps with the stack holding argc, argv and envp
/// (unused here). `main` is called with the stack 16-byte aligned, as the ABI requires before
/// a `call`; Linux enters so aligned, and the `and` keeps it so at no cost.
// SAFETY: the body is one `naked_asm!` that sets up what `main` (an `extern "C"` function that
// takes nothing and never returns) needs from the ABI, and never returns itself.
#[unsafe(naked)]
// SAFETY: `_start` is the one symbol with this name in the program (there is no C runtime).
#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        "xor ebp, ebp", // the outermost frame, for debuggers and backtraces
        "and rsp, -16",
        "call {main}",
        "ud2", // main never returns
        main = sym main,
    )
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut line = Line::new();
    let _ = write!(line, "panic: {info}");
    line.print(2);
    sys::exit(101)
}

/// The prebuilt `core` is compiled for unwinding, and its unwind tables name the personality
/// routine that std would define. With `panic = "abort"` nothing unwinds, so nothing calls it;
/// the release build's link-time optimization drops the reference, a debug build needs the
/// symbol.
// SAFETY: no other definition exists without std.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

/// One line of output, formatted without allocation and written with one system call.
struct Line(heapless::String<256>);

impl Line {
    fn new() -> Self {
        Self(heapless::String::new())
    }

    /// Writes the line (cut at 255 bytes if it was longer) and a newline to `fd`.
    fn print(mut self, fd: u32) {
        if self.0.push('\n').is_err() {
            self.0.pop();
            let _ = self.0.push('\n');
        }
        sys::write_all(fd, self.0.as_bytes());
    }
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // Keep what fits, one character at a time, so a long line is cut, not lost.
        for c in s.chars() {
            self.0.push(c).map_err(|_| core::fmt::Error)?;
        }
        Ok(())
    }
}

/// Formats and prints one line on standard output.
macro_rules! println {
    ($($arg:tt)*) => {{
        let mut line = Line::new();
        let _ = write!(line, $($arg)*);
        line.print(1);
    }};
}

// ---------------------------------------------------------------------------------------------
// The clock
// ---------------------------------------------------------------------------------------------

/// `CLOCK_MONOTONIC` in microseconds, as `u64` ticks (they wrap after 584 000 years).
#[derive(Debug, Clone, Copy)]
struct Monotonic;

impl Monotonic {
    fn now(self) -> Instant<Self> {
        let ts = sys::monotonic();
        Instant::new(ts.sec as u64 * 1_000_000 + ts.nsec as u64 / 1_000)
    }

    /// Sleeps until the clock shows `at`. The clock reads whole microseconds rounded down,
    /// so waking at the start of tick `at` is when it first shows `at`: never early.
    fn sleep_until(self, at: Instant<Self>) {
        let us = at.duration_since_epoch().integer();
        sys::sleep_until(sys::Timespec {
            sec: (us / 1_000_000) as i64,
            nsec: (us % 1_000_000 * 1_000) as i64,
        });
    }
}

impl Clock for Monotonic {
    type T = u64;
    const SCALING_FACTOR: Fraction = Fraction::new(1, 1_000_000);

    fn try_now(&self) -> Result<Instant<Self>, embedded_time::clock::Error> {
        Ok(self.now())
    }
}

fn micros(instant: Instant<Monotonic>) -> u64 {
    instant.duration_since_epoch().integer()
}

// ---------------------------------------------------------------------------------------------
// Events and components
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    /// The ticker's periodic event.
    Tick,
    /// A unit of work.
    Work(u32),
    /// The producer's one-shot timer.
    Deadline,
}

impl UserEvent for Ev {
    const KINDS: usize = 3;

    fn kind(&self) -> usize {
        match self {
            Ev::Tick => 0,
            Ev::Work(_) => 1,
            Ev::Deadline => 2,
        }
    }

    fn kind_name(kind: usize) -> &'static str {
        ["tick", "work", "deadline"]
            .get(kind)
            .copied()
            .unwrap_or("?")
    }
}

const TICK: Kind = Kind::user(0);
const WORK: Kind = Kind::user(1);
const DEADLINE: Kind = Kind::user(2);

const TICK_PERIOD: Milliseconds<u32> = Milliseconds(2);
const TICKS: u64 = 10;
const DEADLINE_AFTER: Milliseconds<u32> = Milliseconds(5);
const WORK_PER_TICK: u32 = 2;

/// A periodic timer that asks for a stop after [`TICKS`] ticks and is cancelled on `stop`.
struct Ticker {
    counters: Counters<1>,
    ticks: CounterId,
    timer: Option<TimerHandle>,
    /// When the run started and when the last tick came, in µs.
    started_us: u64,
    last_tick_us: u64,
}

impl Ticker {
    fn new() -> Self {
        let mut counters = Counters::new();
        let ticks = counters.register("ticks").unwrap();
        Self {
            counters,
            ticks,
            timer: None,
            started_us: 0,
            last_tick_us: 0,
        }
    }
}

impl Component<Ev, Monotonic> for Ticker {
    fn name(&self) -> &'static str {
        "ticker"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(Kind::START)?;
        routes.append(TICK)?;
        routes.append(Kind::STOP)
    }

    fn handle(&mut self, ctx: &mut Context<'_, Ev, Monotonic>, event: &mut Event<Ev>) -> Flow {
        match event {
            Event::Start => {
                self.started_us = micros(ctx.now());
                self.timer = ctx.schedule_every(TICK_PERIOD, Ev::Tick).ok();
            }
            Event::User(Ev::Tick) => {
                self.counters.inc_id(self.ticks, 1);
                self.last_tick_us = micros(ctx.now());
                if self.counters.get("ticks") == TICKS {
                    ctx.request_stop();
                }
            }
            Event::Stop => {
                if let Some(handle) = self.timer.take() {
                    let _ = ctx.cancel(handle);
                }
            }
            _ => {}
        }
        Flow::Continue
    }

    fn counters(&self) -> Option<&dyn CounterSet> {
        Some(&self.counters)
    }

    fn counters_mut(&mut self) -> Option<&mut dyn CounterSet> {
        Some(&mut self.counters)
    }
}

/// Turns each tick into work and arms a one-shot timer at start.
struct Producer {
    next: u32,
    /// When its one-shot timer fired, in µs since the start.
    deadline_us: Option<u64>,
    started_us: u64,
}

impl Component<Ev, Monotonic> for Producer {
    fn name(&self) -> &'static str {
        "producer"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(Kind::START)?;
        routes.append(TICK)?;
        routes.append(DEADLINE)
    }

    fn handle(&mut self, ctx: &mut Context<'_, Ev, Monotonic>, event: &mut Event<Ev>) -> Flow {
        match event {
            Event::Start => {
                self.started_us = micros(ctx.now());
                let _ = ctx.schedule_after(DEADLINE_AFTER, Ev::Deadline);
            }
            Event::User(Ev::Tick) if !ctx.is_done() => {
                for _ in 0..WORK_PER_TICK {
                    if ctx.schedule(Ev::Work(self.next)).is_ok() {
                        self.next += 1;
                    }
                }
            }
            Event::User(Ev::Deadline) => {
                self.deadline_us = Some(micros(ctx.now()) - self.started_us);
            }
            _ => {}
        }
        Flow::Continue
    }
}

/// Counts the work, and checks it comes in order.
struct Consumer {
    counters: Counters<2>,
    work: CounterId,
    out_of_order: CounterId,
    expected: u32,
}

impl Consumer {
    fn new() -> Self {
        let mut counters = Counters::new();
        let work = counters.register("work").unwrap();
        let out_of_order = counters.register("out_of_order").unwrap();
        Self {
            counters,
            work,
            out_of_order,
            expected: 0,
        }
    }
}

impl Component<Ev, Monotonic> for Consumer {
    fn name(&self) -> &'static str {
        "consumer"
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(WORK)
    }

    fn handle(&mut self, _: &mut Context<'_, Ev, Monotonic>, event: &mut Event<Ev>) -> Flow {
        if let Event::User(Ev::Work(n)) = *event {
            self.counters.inc_id(self.work, 1);
            if n != self.expected {
                self.counters.inc_id(self.out_of_order, 1);
            }
            self.expected = n + 1;
        }
        Flow::Continue
    }

    fn counters(&self) -> Option<&dyn CounterSet> {
        Some(&self.counters)
    }

    fn counters_mut(&mut self) -> Option<&mut dyn CounterSet> {
        Some(&mut self.counters)
    }
}

// ---------------------------------------------------------------------------------------------
// The main loop
// ---------------------------------------------------------------------------------------------

/// 3 components, the lifecycle and 3 user kinds ([`zendaemon_core::kinds`]), 2 handlers per kind, 32 sequential and 4 timed
/// events.
type App<'c> = Kernel<'c, Ev, Monotonic, 3, { zendaemon_core::kinds::<Ev>() }, 2, 32, 4>;

extern "C" fn main() -> ! {
    let clock = Monotonic;
    let mut ticker = Ticker::new();
    let mut producer = Producer {
        next: 0,
        deadline_us: None,
        started_us: 0,
    };
    let mut consumer = Consumer::new();

    let mut kernel = App::new(Settings::default().with_stop_timeout(Milliseconds(1_000)));
    kernel.add(&mut ticker).unwrap();
    kernel.add(&mut producer).unwrap();
    kernel.add(&mut consumer).unwrap();

    kernel.start(clock.now()).unwrap();
    let end = loop {
        match kernel.step(clock.now()) {
            Ok(Step::Dispatched { .. }) => {}
            Ok(Step::Idle) => match kernel.next_deadline() {
                Some(at) => clock.sleep_until(at),
                // Nothing can post into this kernel: an idle one without a deadline is stuck.
                None => panic!("idle without a deadline"),
            },
            Ok(Step::Ended(reason)) => break reason,
            Err(e) => println!("step: {e}"),
        }
    };
    let stats = kernel.stats();
    let events = stats.total_dispatched();
    let max_late_us = stats.lateness.max_ticks;
    let dispatched = |kind: Kind| stats.dispatched[kind.index()];
    let (ticks, work, deadlines) = (dispatched(TICK), dispatched(WORK), dispatched(DEADLINE));
    drop(kernel);

    println!(
        "freestanding: ticks={ticks} work={work} deadline={deadlines} events={events} end={end:?}"
    );
    let ran_us = ticker.last_tick_us - ticker.started_us;
    let deadline_us = producer.deadline_us.unwrap_or(0);
    println!(
        "timing: last tick after {ran_us} us, deadline after {deadline_us} us, latest timer {max_late_us} us late"
    );

    // Timers may fire late (the machine is busy) but never early.
    let on_time = ran_us >= TICKS * 2_000 && deadline_us >= 5_000;
    let ok = end == EndReason::Stopped
        && ticks == TICKS
        && work == TICKS * u64::from(WORK_PER_TICK)
        && consumer.counters.get("work") == work
        && consumer.counters.get("out_of_order") == 0
        && deadlines == 1
        && on_time;
    println!("check: {}", if ok { "ok" } else { "FAILED" });
    sys::exit(if ok { 0 } else { 1 })
}
