//! tail's figures for issue 11 (see BENCHMARKS.md): what a checkpoint costs, what periodic
//! checkpoints cost in throughput, and a backlog read to compare with GNU `tail`.
//!
//! The follower and the counter run in a kernel here, driven as the shell's loop drives them
//! (batches of events at one clock reading), without the rest of the daemon; a checkpoint
//! does what the shell does at `checkpoint`: every service's `persist`, the persistent state
//! serialized, handed to a `checkpoint::Writer` thread that writes it durably.
//!
//! ```sh
//! cargo bench -p zendaemon-examples --bench tail                    # all of it
//! cargo bench -p zendaemon-examples --bench tail -- backlog FILE N  # read FILE (N lines) once
//! ```

use std::fs;
use std::io::Write;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zendaemon::checkpoint::Writer;
use zendaemon::core::{kinds, Component, Kernel, Run, Settings};
use zendaemon::pstate::Pstate;
use zendaemon::{Service, StdClock};
use zendaemon_examples::{
    CountSettings, FollowEvent, FollowSettings, Follower, LineCounter, StartAt,
};

type TailKernel<'c> = Kernel<
    'c,
    FollowEvent,
    StdClock,
    2,
    { kinds::<FollowEvent>() },
    2,
    1024,
    8,
    dyn Service<FollowEvent> + 'c,
>;

fn components(files: &[PathBuf]) -> (Follower<FollowEvent>, LineCounter<FollowEvent>) {
    let mut follower = Follower::new("tail");
    follower
        .apply(
            FollowSettings {
                files: files.to_vec(),
                poll_ms: 3_600_000,
                start_at: StartAt::Beginning,
                ..FollowSettings::default()
            },
            Path::new("/"),
        )
        .unwrap();
    let mut counter = LineCounter::new("count");
    counter
        .apply(CountSettings {
            patterns: [("errors".to_owned(), "ERROR".to_owned())].into(),
            log_matches: false,
        })
        .unwrap();
    (follower, counter)
}

/// The shell's part of a checkpoint, in the loop: collect and serialize; then hand over.
fn checkpoint(kernel: &TailKernel<'_>, pstate: &mut Pstate, writer: Option<&Writer>) -> usize {
    for s in kernel.components() {
        if let Some(v) = s.persist() {
            pstate.set(s.name(), v);
        }
    }
    let bytes = pstate.to_bytes().unwrap();
    let len = bytes.len();
    if let Some(w) = writer {
        w.submit(pstate.path().to_path_buf(), bytes);
    }
    len
}

/// CPU time of the calling thread (user + system).
fn thread_cpu() -> Duration {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD).unwrap();
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(u.user_time()) + tv(u.system_time())
}

/// Runs the kernel until `lines` lines were handled, with a checkpoint every `every` (none
/// with `None`); returns the wall time and the loop thread's CPU time it took.
fn drain(
    kernel: &mut TailKernel<'_>,
    lines: u64,
    every: Option<Duration>,
    pstate: &mut Pstate,
    writer: &Writer,
) -> (Duration, Duration) {
    let start = Instant::now();
    let cpu = thread_cpu();
    let every_us = every.map(|e| e.as_micros() as u64);
    let mut next = every_us.map(|e| StdClock::ticks(StdClock::now()) + e);
    let limit = NonZeroU32::new(16).unwrap();
    loop {
        // One clock reading per batch, as the shell's loop does; the checkpoint's due time is
        // checked against it.
        let now = StdClock::now();
        match kernel.run(now, limit) {
            Ok(Run::Idle) => {
                let handled = kernel.stats().dispatched[zendaemon::core::Kind::user(1).index()];
                if handled >= lines {
                    return (start.elapsed(), thread_cpu() - cpu);
                }
                // More to read: look again.
                kernel.queue().schedule(FollowEvent::Poll).unwrap();
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
        if let (Some(at), Some(e)) = (next, every_us) {
            if StdClock::ticks(now) >= at {
                checkpoint(kernel, pstate, Some(writer));
                next = Some(at + e);
            }
        }
    }
}

fn write_lines(path: &Path, n: u64) {
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    for i in 0..n {
        if i % 10 == 0 {
            writeln!(
                f,
                "2026-12-08T01:02:03 host app[123]: line {i} ERROR something failed"
            )
            .unwrap();
        } else {
            writeln!(
                f,
                "2026-12-08T01:02:03 host app[123]: line {i} all is well here"
            )
            .unwrap();
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Reads `file`, which holds `lines` lines, once from its start with the follower and the
/// counter; prints the count.
fn backlog(file: &Path, lines: u64) {
    let (mut f, mut c) = components(&[file.to_path_buf()]);
    let mut kernel: TailKernel<'_> = Kernel::new(Settings::default());
    kernel.add(&mut f).unwrap();
    kernel.add(&mut c).unwrap();
    kernel.start(StdClock::now()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut pstate = Pstate::load(dir.path().join("b.pstate")).unwrap();
    let writer = Writer::start().unwrap();
    drain(&mut kernel, lines, None, &mut pstate, &writer);
    drop(kernel);
    println!("{}", c.counters().unwrap().entry(0).1);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "backlog") {
        backlog(Path::new(&args[i + 1]), args[i + 2].parse().unwrap());
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no argument (or
    // `--test`): then there is nothing to measure.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();

    // 1. One checkpoint of tail following 100 files.
    let files: Vec<PathBuf> = (0..100)
        .map(|i| dir.path().join(format!("app-{i:03}.log")))
        .collect();
    for f in &files {
        write_lines(f, 200);
    }
    let (mut f, mut c) = components(&files);
    let mut kernel: TailKernel<'_> = Kernel::new(Settings::default());
    kernel.add(&mut f).unwrap();
    kernel.add(&mut c).unwrap();
    kernel.start(StdClock::now()).unwrap();
    let mut pstate = Pstate::load(dir.path().join("t.pstate")).unwrap();
    let writer = Writer::start().unwrap();
    drain(&mut kernel, 100 * 200, None, &mut pstate, &writer);
    let mut loop_us = Vec::new();
    let mut size = 0;
    for _ in 0..200 {
        let t = Instant::now();
        size = checkpoint(&kernel, &mut pstate, None);
        loop_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let bytes = pstate.to_bytes().unwrap();
    let mut write_ms = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        zendaemon::atomic::write_atomic(pstate.path(), &bytes).unwrap();
        write_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "checkpoint, 100 files: in the loop (persist + serialize, {size} bytes) median {:.0} us \
         (min {:.0}); write + fsyncs in the writer thread median {:.2} ms (min {:.2}, max {:.2})",
        median(loop_us.clone()),
        loop_us.iter().copied().fold(f64::MAX, f64::min),
        median(write_ms.clone()),
        write_ms.iter().copied().fold(f64::MAX, f64::min),
        write_ms.iter().copied().fold(0.0, f64::max),
    );
    drop(kernel);

    // 2. Throughput: three files of 2 M lines each (6 M lines a run, a few seconds), with a
    // checkpoint every second, every 0.1 s, or none; the plans take turns, run after run.
    const LINES: u64 = 2_000_000;
    let bigs: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("big-{i}.log")))
        .collect();
    write_lines(&bigs[0], LINES);
    for b in &bigs[1..] {
        fs::copy(&bigs[0], b).unwrap();
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut rates: [Vec<f64>; 3] = Default::default();
    let mut cpu_rates: [Vec<f64>; 3] = Default::default();
    let plans = [
        None,
        Some(Duration::from_secs(1)),
        Some(Duration::from_millis(100)),
    ];
    for _ in 0..runs {
        for (k, every) in plans.iter().enumerate() {
            let (mut f, mut c) = components(&bigs);
            let mut kernel: TailKernel<'_> = Kernel::new(Settings::default());
            kernel.add(&mut f).unwrap();
            kernel.add(&mut c).unwrap();
            kernel.start(StdClock::now()).unwrap();
            let mut pstate = Pstate::load(dir.path().join("big.pstate")).unwrap();
            let (wall, cpu) = drain(&mut kernel, 3 * LINES, *every, &mut pstate, &writer);
            rates[k].push(3.0 * LINES as f64 / wall.as_secs_f64() / 1e6);
            cpu_rates[k].push(3.0 * LINES as f64 / cpu.as_secs_f64() / 1e6);
        }
    }
    writer.flush();
    let (none, cpu_none) = (median(rates[0].clone()), median(cpu_rates[0].clone()));
    for (k, name) in [
        "no checkpoints",
        "a checkpoint every 1 s",
        "a checkpoint every 0.1 s",
    ]
    .iter()
    .enumerate()
    {
        let (m, c) = (median(rates[k].clone()), median(cpu_rates[k].clone()));
        println!(
            "6 M-line backlog, {name}: median {m:.2} M lines/s wall ({:+.1}% against none), \
             {c:.2} M lines per CPU second of the loop ({:+.1}%), {runs} runs; wall runs {:?}",
            (m / none - 1.0) * 100.0,
            (c / cpu_none - 1.0) * 100.0,
            rates[k]
                .iter()
                .map(|r| (r * 100.0).round() / 100.0)
                .collect::<Vec<_>>()
        );
    }
}
