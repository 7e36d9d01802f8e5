"""pyzenkit's event dispatch, timed: the workload of core/examples/icount.rs in Python.

    python dispatch.py <queue|loop1|loop3> <n>

Prints one line: `<scenario> <n> <seconds> <events/s>`.

* `queue`: `EventQueueManager.schedule` + `next()` in a loop, the event's args summed inline
  (icount's `queue`).
* `loop1`, `loop3`: pyzenkit's own `ZenDaemon._event_loop` (the real function, called on a
  minimal stand-in for the daemon object) dispatching through 1 or 3 component callbacks, each
  returning `(FLAG_CONTINUE, args)` (icount's `kernel1` and `kernel3`). The first callback
  schedules the next event, as pyzenkit's demo component does, so the queue keeps its length.

Like icount, the queue holds one far timed event (so `next()` checks the timed queue and reads
the clock, as it does in any daemon with periodic events) and a backlog of 8 sequential events.
"""

import sys
import time

from pyzenkit.zendaemon import EventQueueManager, ZenDaemon, ZenDaemonComponent

BACKLOG = 8


class Done(BaseException):
    """Ends the loop after n events."""


class Sum(ZenDaemonComponent):
    """A callback that does the least work: sum the args, pass them on."""

    def __init__(self):
        super().__init__()
        self.sum = 0

    def get_events(self):
        return [self.gen_event_handler("ev", self.cbk_event_ev)]

    def cbk_event_ev(self, daemon, args):
        self.sum += args
        return (daemon.FLAG_CONTINUE, args)


class Producer(Sum):
    """The first callback: also schedules the next event, n times in all."""

    def __init__(self, n):
        super().__init__()
        self.left = n

    def cbk_event_ev(self, daemon, args):
        self.left -= 1
        if self.left < 0:
            raise Done()
        daemon.queue.schedule("ev", self.left)
        self.sum += args
        return (daemon.FLAG_CONTINUE, args)


class StandIn:
    """What `ZenDaemon._event_loop` reads of `self`."""

    FLAG_CONTINUE = ZenDaemon.FLAG_CONTINUE
    FLAG_STOP = ZenDaemon.FLAG_STOP

    def __init__(self, components):
        self.queue = EventQueueManager()
        self.callbacks = {}
        self.flag_loop_done = 0
        # As ZenDaemon._init_callbacks registers them: in component order.
        for component in components:
            for handler in component.get_events():
                self.callbacks.setdefault(handler["event"], []).append(handler["callback"])

    def wait(self, period):
        raise RuntimeError("the benchmark never waits")


def filled(queue):
    queue.schedule_after(3600, "ev", 0)
    for i in range(BACKLOG):
        queue.schedule("ev", i)
    return queue


def run_queue(n):
    queue = filled(EventQueueManager())
    total = 0
    start = time.perf_counter()
    for i in range(n):
        queue.schedule("ev", i)
        (event, args) = queue.next()
        if event:
            total += args
    return time.perf_counter() - start, total


def run_loop(handlers, n):
    components = [Producer(n)] + [Sum() for _ in range(handlers - 1)]
    daemon = StandIn(components)
    filled(daemon.queue)
    start = time.perf_counter()
    try:
        ZenDaemon._event_loop(daemon)
    except Done:
        pass
    elapsed = time.perf_counter() - start
    return elapsed, sum(c.sum for c in components)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: dispatch.py <queue|loop1|loop3> <n>")
    scenario, n = sys.argv[1], int(sys.argv[2])
    if scenario == "queue":
        elapsed, _ = run_queue(n)
    elif scenario in ("loop1", "loop3"):
        elapsed, _ = run_loop(int(scenario[-1]), n)
    else:
        sys.exit("unknown scenario: " + scenario)
    print("{} {} {:.6f} {:.0f}".format(scenario, n, elapsed, n / elapsed))


if __name__ == "__main__":
    main()
