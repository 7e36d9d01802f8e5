"""Resident memory of the demo daemon (examples/src/bin/demo.rs) after start.

    python3 .ci/rss-demo.py DEMO [RUNS]

In the foreground (`--no-daemon`), until READY=1 arrives on a NOTIFY_SOCKET, as
.ci/pyzenkit/measure.py measures it: VmRSS, the anonymous part (RssAnon), and from
/proc/<pid>/smaps the Rss of the mappings of the binary itself and of shared libraries (every
`*.so*` file: libc, ld.so, libgcc_s).
In daemon mode, until the launcher exits (it waits for the daemon's start-up result): VmRSS of
the daemon, whose PID the pidfile gives. Every file in a temporary directory; the median of
RUNS runs each (default 10). Prints `figure <name> <value>` lines (.ci/rss-bench reads them).
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def median(values):
    values = sorted(values)
    return values[(len(values) - 1) // 2]


def status_kib(pid, field):
    with open("/proc/{}/status".format(pid)) as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError("no {} in /proc/{}/status".format(field, pid))


def mapped_kib(pid, binary):
    """The Rss of the process's mappings of `binary`, and of shared libraries'."""
    own, libraries, path = 0, 0, ""
    with open("/proc/{}/smaps".format(pid)) as smaps:
        for line in smaps:
            fields = line.split()
            if not fields[0].endswith(":"):  # a mapping's header line
                path = fields[5] if len(fields) > 5 else ""
            elif fields[0] == "Rss:":
                if path == binary:
                    own += int(fields[1])
                elif ".so" in os.path.basename(path):
                    libraries += int(fields[1])
    return own, libraries


def wait_gone(pid):
    deadline = time.monotonic() + 30
    while os.path.exists("/proc/{}".format(pid)):
        with open("/proc/{}/stat".format(pid)) as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the demo daemon {} did not stop".format(pid))
        time.sleep(0.002)


def main():
    demo = os.path.abspath(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    with tempfile.TemporaryDirectory() as tmp:
        notify = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify)
        sock.settimeout(30)
        with open(os.path.join(tmp, "demo.json.conf"), "w") as conf:
            conf.write("{}\n")
        os.mkdir(os.path.join(tmp, "demo.d"))
        pidfile = os.path.join(tmp, "demo.pid")
        args = [demo, "--log-level", "warn"]
        for flag, name in (("--pid-file", "demo.pid"), ("--runlog-dir", "runlogs"),
                           ("--state-file", "demo.state"), ("--pstate-file", "demo.pstate"),
                           ("--log-file", "demo.log"), ("--config-file", "demo.json.conf"),
                           ("--config-dir", "demo.d"), ("--work-dir", "")):
            args += [flag, os.path.join(tmp, name)]
        env = dict(os.environ, NOTIFY_SOCKET=notify, XDG_RUNTIME_DIR=tmp, XDG_CONFIG_HOME=tmp)
        # Daemon mode: ready when the launcher exits; no READY=1 left behind for the next run.
        env_daemon = {k: v for k, v in env.items() if k != "NOTIFY_SOCKET"}

        rss, anon, own, libraries, rss_daemon = [], [], [], [], []
        for _ in range(runs):
            child = subprocess.Popen(args + ["--no-daemon"], env=env, cwd=tmp,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            try:
                while b"READY=1" not in sock.recv(512).split(b"\n"):
                    pass
            except socket.timeout:
                child.kill()
                raise RuntimeError("{} never reported READY=1".format(demo))
            rss.append(status_kib(child.pid, "VmRSS:"))
            anon.append(status_kib(child.pid, "RssAnon:"))
            mapped = mapped_kib(child.pid, demo)
            own.append(mapped[0])
            libraries.append(mapped[1])
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=30)

            code = subprocess.call(args, env=env_daemon, cwd=tmp,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            if code != 0:
                raise RuntimeError("{} (daemon mode) exited with {}".format(demo, code))
            with open(pidfile) as f:
                pid = int(f.read().strip())
            rss_daemon.append(status_kib(pid, "VmRSS:"))
            os.kill(pid, signal.SIGTERM)
            wait_gone(pid)

    print("figure demo_rss_kib {}".format(median(rss)))
    print("figure demo_rss_anon_kib {}".format(median(anon)))
    print("figure demo_rss_binary_kib {}".format(median(own)))
    print("figure demo_rss_libraries_kib {}".format(median(libraries)))
    print("figure demo_rss_daemon_kib {}".format(median(rss_daemon)))


if __name__ == "__main__":
    main()
