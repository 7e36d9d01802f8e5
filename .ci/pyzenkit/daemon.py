"""The smallest pyzenkit daemon that does the work of zendaemon's daemon bench.

Run by .ci/pyzenkit/measure.py, configured like std-shell/benches/daemon.rs's daemon role:

* ZD_BENCH_DIR: directory for every file (configuration, pidfile, logs, runlogs).
* ZD_BENCH_SOCKET: a Unix datagram socket the driver listens on. The `start` callback sends
  `READY=1\\nMAINPID=<pid>` to it (pyzenkit has no readiness protocol: the first moment its
  loop runs a component's callback is the closest match to zendaemon's READY=1, which
  follows the `start` pipeline too).
* ZD_BENCH_ROLE: `idle` (do nothing) or `dispatch` (ZD_BENCH_EVENTS events `ev` through
  ZD_BENCH_HANDLERS callbacks, the first of which schedules the next one; then report
  `events= secs= rss_start_kib= rss_end_kib= hwm_kib=` and stop as SIGINT would).
"""

import os
import socket
import sys
import time

import pyzenkit.zendaemon as zd

ROLE = os.environ.get("ZD_BENCH_ROLE", "idle")
SOCKET = os.environ["ZD_BENCH_SOCKET"]
DIR = os.environ["ZD_BENCH_DIR"]
BACKLOG = 8


def report(message):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.sendto(message.encode(), SOCKET)
    finally:
        sock.close()


def proc_status_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


class Sum(zd.ZenDaemonComponent):
    def __init__(self):
        super().__init__()
        self.sum = 0

    def get_events(self):
        return [self.gen_event_handler("ev", self.cbk_event_ev)]

    def cbk_event_ev(self, daemon, args):
        self.sum += args
        return (daemon.FLAG_CONTINUE, args)


class Probe(Sum):
    def __init__(self, events):
        super().__init__()
        self.events = events
        self.scheduled = 0
        self.handled = 0
        self.first = None
        self.rss_start = 0

    def get_events(self):
        return [
            self.gen_event_handler("start", self.cbk_event_start),
            self.gen_event_handler("ev", self.cbk_event_ev),
        ]

    def cbk_event_start(self, daemon, args):
        report("READY=1\nMAINPID={}".format(os.getpid()))
        if ROLE == "dispatch":
            self.rss_start = proc_status_kib("VmRSS:")
            while self.scheduled < min(self.events, BACKLOG):
                self.scheduled += 1
                daemon.queue.schedule("ev", self.scheduled)
        return (daemon.FLAG_CONTINUE, args)

    def cbk_event_ev(self, daemon, args):
        self.sum += args
        self.handled += 1
        if self.first is None:
            self.first = time.perf_counter()
        if self.scheduled < self.events:
            self.scheduled += 1
            daemon.queue.schedule("ev", self.scheduled)
        if self.handled == self.events:
            secs = time.perf_counter() - self.first
            report(
                "events={} secs={:.6f} rss_start_kib={} rss_end_kib={} hwm_kib={}".format(
                    self.events - 1,
                    secs,
                    self.rss_start,
                    proc_status_kib("VmRSS:"),
                    proc_status_kib("VmHWM:"),
                )
            )
            # As SIGINT does: the loop ends once only timed events are left.
            daemon.set_done()
            daemon.queue.schedule_next(daemon.EVENT_STOP)
        return (daemon.FLAG_CONTINUE, args)


class BenchDaemon(zd.ZenDaemon):
    def __init__(self, components):
        super().__init__(
            name="pyzenkitd",
            description="pyzenkit side of zendaemon's daemon bench",
            path_bin=DIR,
            path_cfg=DIR,
            path_var=DIR,
            path_log=DIR,
            path_run=DIR,
            path_tmp=DIR,
            components=components,
        )


def main():
    events = int(os.environ.get("ZD_BENCH_EVENTS", "0"))
    handlers = int(os.environ.get("ZD_BENCH_HANDLERS", "1"))
    components = [Probe(events)] + [Sum() for _ in range(handlers - 1)]
    BenchDaemon(components).run()


if __name__ == "__main__":
    main()
