"""Start time, resident memory and full-loop dispatch of a pyzenkit daemon (daemon.py).

    python measure.py [--quick] [--events N] [--demo PATH_OF_OUR_DEMO]

The same measurements, by the same method, as std-shell/benches/daemon.rs's `dispatch` and
`start` groups; prints `figure <name> <value>` lines (.ci/pyzenkit-bench reads them).

With `--demo`, also the two demo daemons, in the foreground: pyzenkit's own DemoZenDaemon
(`python -m pyzenkit.zendaemon`; it writes its files to /tmp/demo-zendaemon.py*) until it
logs "Performing component startup...", its component's start callback; and ours
(examples/src/bin/demo.rs, every path in a temporary directory) until READY=1, which follows
its `start` pipeline. Then VmRSS, then SIGTERM.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def percentile(values, p):
    values = sorted(values)
    rank = max(1, min(len(values), int(-(-p * len(values) // 100))))
    return values[rank - 1]


def proc_status_kib(pid, field):
    try:
        with open("/proc/{}/status".format(pid)) as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def alive(pid):
    try:
        with open("/proc/{}/stat".format(pid)) as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


class Env:
    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        with open(os.path.join(self.dir, "pyzenkitd.conf"), "w") as conf:
            conf.write("{}\n")
        os.mkdir(os.path.join(self.dir, "pyzenkitd"))
        self.path = os.path.join(self.dir, "report.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def spawn(self, role, foreground, **extra):
        env = dict(os.environ, ZD_BENCH_ROLE=role, ZD_BENCH_SOCKET=self.path, ZD_BENCH_DIR=self.dir)
        env.update({k: str(v) for k, v in extra.items()})
        args = [sys.executable, os.path.join(HERE, "daemon.py"), "--log-level", "warning",
                "--work-dir", self.dir, "--pid-file", os.path.join(self.dir, "pyzenkitd.pid")]
        if foreground:
            args.append("--no-daemon")
        return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def receive(self, timeout):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(512).decode()
        except socket.timeout:
            return None

    def drain(self):
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(512)
        except BlockingIOError:
            pass
        self.sock.setblocking(True)


def ready_pid(message):
    for line in message.splitlines():
        if line.startswith("MAINPID="):
            return int(line.split("=", 1)[1])
    raise RuntimeError("no MAINPID in " + message)


def field(report, key):
    for kv in report.split():
        k, _, v = kv.partition("=")
        if k == key:
            return float(v)
    raise RuntimeError("no {} in {}".format(key, report))


def stop(pid):
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while alive(pid):
        if time.monotonic() > deadline:
            raise RuntimeError("pyzenkit daemon {} did not stop".format(pid))
        time.sleep(0.002)


def spawn_until(args, env, cwd, ready):
    """Spawns a daemon; returns (process, seconds until `ready(process)` returned true)."""
    t0 = time.monotonic()
    child = subprocess.Popen(args, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if not ready(child):
        child.kill()
        raise RuntimeError("{} never became ready".format(args[0]))
    return child, time.monotonic() - t0


def demos(ours, runs):
    with tempfile.TemporaryDirectory() as tmp:
        notify = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify)
        sock.settimeout(30)

        def ours_ready(child):
            while True:
                if b"READY=1" in sock.recv(512).split(b"\n"):
                    return True

        def theirs_ready(child):
            for line in child.stdout:
                if b"Performing component startup" in line:
                    return True
            return False

        env_ours = dict(os.environ, NOTIFY_SOCKET=notify, XDG_RUNTIME_DIR=tmp, XDG_CONFIG_HOME=tmp)
        args_ours = [ours, "--no-daemon", "--log-level", "warn"]
        for flag, name in (("--pid-file", "demo.pid"), ("--runlog-dir", "runlogs"),
                           ("--state-file", "demo.state"), ("--pstate-file", "demo.pstate"),
                           ("--log-file", "demo.log"), ("--config-file", "demo.json.conf"),
                           ("--config-dir", "demo.d"), ("--work-dir", "")):
            args_ours += [flag, os.path.join(tmp, name)]
        with open(os.path.join(tmp, "demo.json.conf"), "w") as conf:
            conf.write("{}\n")
        os.mkdir(os.path.join(tmp, "demo.d"))
        args_theirs = [sys.executable, "-m", "pyzenkit.zendaemon"]

        for side, args, env, ready in (("ours", args_ours, env_ours, ours_ready),
                                       ("theirs", args_theirs, dict(os.environ), theirs_ready)):
            times, rss = [], []
            for _ in range(runs):
                child, secs = spawn_until(args, env, tmp, ready)
                times.append(secs)
                rss.append(proc_status_kib(child.pid, "VmRSS:"))
                child.send_signal(signal.SIGTERM)
                child.stdout.close()
                child.wait(timeout=30)
            print("figure demo_{}_ready_p50_ms {}".format(side, percentile(times, 50) * 1e3))
            print("figure demo_{}_ready_max_ms {}".format(side, max(times) * 1e3))
            print("figure demo_{}_rss_kib {}".format(side, percentile(rss, 50)))


def main():
    quick = "--quick" in sys.argv
    events = 1000000
    if "--events" in sys.argv:
        events = int(sys.argv[sys.argv.index("--events") + 1])
    runs = 10 if quick else 30
    if "--demo" in sys.argv:
        demos(os.path.abspath(sys.argv[sys.argv.index("--demo") + 1]), runs)
    env = Env()

    fg, bg, launcher_exit, rss = [], [], [], []
    for _ in range(runs):
        env.drain()
        t0 = time.monotonic()
        child = env.spawn("idle", True)
        message = env.receive(30)
        if message is None:
            child.kill()
            raise RuntimeError("pyzenkit daemon (foreground) never became ready")
        fg.append(time.monotonic() - t0)
        rss.append(proc_status_kib(child.pid, "VmRSS:"))
        stop(child.pid)
        child.wait()

        env.drain()
        t0 = time.monotonic()
        child = env.spawn("idle", False)
        code = child.wait()
        launched = time.monotonic()
        message = env.receive(30)
        if code != 0 or message is None:
            raise RuntimeError("pyzenkit daemon (daemon mode) failed: exit {}".format(code))
        ready = time.monotonic()
        launcher_exit.append(launched - t0)
        bg.append(ready - t0)
        stop(ready_pid(message))

    for name, times in (("start_fg", fg), ("start_daemon", bg), ("start_launcher", launcher_exit)):
        print("figure {}_p50_ms {}".format(name, percentile(times, 50) * 1e3))
        print("figure {}_max_ms {}".format(name, max(times) * 1e3))
    print("figure rss_start_kib {}".format(percentile(rss, 50)))

    for handlers in (1, 3):
        env.drain()
        child = env.spawn("dispatch", True, ZD_BENCH_EVENTS=events + 1, ZD_BENCH_HANDLERS=handlers)
        env.receive(30)  # READY=1
        report = env.receive(600)
        if report is None:
            child.kill()
            raise RuntimeError("no dispatch report from the pyzenkit daemon")
        if child.wait(timeout=60) != 0:
            raise RuntimeError("pyzenkit daemon (dispatch) exited with {}".format(child.returncode))
        rate = field(report, "events") / field(report, "secs")
        print("figure shell_dispatch_{}_events_per_s {}".format(handlers, rate))
        print("figure shell_dispatch_{}_rss_end_kib {}".format(handlers, field(report, "rss_end_kib")))


if __name__ == "__main__":
    main()
