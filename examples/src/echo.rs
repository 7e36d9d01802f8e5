//! [`Echo`]: a TCP echo service as a component, and the pattern for any small network
//! service: take the listening socket as root, serve it as the service user.
//!
//! The socket comes from systemd's socket activation when systemd passed one under the
//! configured name (`FileDescriptorName=`, `"echo"` by default), and otherwise is bound to the
//! configured address. Both happen in [`Service::acquire`], which runs before the daemon drops
//! its privileges, so `"listen": "0.0.0.0:7"` works with `--user nobody`. Everything after
//! that runs as the service user.
//!
//! Each poll event (every `poll_ms`) accepts the waiting connections and echoes what every
//! client sent since the last poll. Sockets are non-blocking, so a poll never waits; a client
//! whose send buffer is full (it does not read its echo) is disconnected. Polling keeps the
//! component self-contained (the kernel has no descriptor readiness); 10 ms by default keeps
//! it cheap and responsive enough for a control port, a health check or a test fixture.
//!
//! Configuration section (its key is the component's name), every key optional:
//!
//! | key | type, default | meaning |
//! |---|---|---|
//! | `listen` | string, none | address to bind when systemd passed no socket, e.g. `"127.0.0.1:7"` |
//! | `socket` | string, `"echo"` | the name of the socket to take from systemd |
//! | `poll_ms` | u64, 10 | milliseconds between polls |
//!
//! With neither a socket from systemd nor `listen`, the start fails with a message saying so.
//! The socket is taken once, at the start: a reload that changes `listen` or `socket` applies
//! at the next start (`poll_ms` at once).
//!
//! Counters: `connections` (accepted), `bytes` (echoed).

use std::io::{ErrorKind, Read, Write};
use std::marker::PhantomData;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use serde::Deserialize;
use zendaemon::core::{
    Component, Context, CounterSet, Counters, Event, Flow, Kind, RouteError, Routes, TimerHandle,
    UserEvent,
};
use zendaemon::{Acquire, Config, Error, Service, StdClock};

/// The echo service's settings (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EchoSettings {
    /// Where to listen when systemd passed no socket.
    pub listen: Option<String>,
    /// The name of systemd's socket to take.
    pub socket: String,
    /// Milliseconds between polls.
    pub poll_ms: u64,
}

impl Default for EchoSettings {
    fn default() -> Self {
        EchoSettings {
            listen: None,
            socket: "echo".into(),
            poll_ms: 10,
        }
    }
}

/// What a daemon's event type provides for an [`Echo`]: its poll event.
pub trait EchoEvents: UserEvent + Clone + Sized {
    /// The user kind of the poll event.
    const POLL_KIND: usize;
    /// The poll event (the component schedules it for itself).
    fn poll() -> Self;
}

/// The events of a daemon that has no others than the echo service's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoEvent {
    /// Time to accept and echo.
    Poll,
}

impl UserEvent for EchoEvent {
    const KINDS: usize = 1;
    fn kind(&self) -> usize {
        0
    }
    fn kind_name(_: usize) -> &'static str {
        "echo_poll"
    }
}

impl EchoEvents for EchoEvent {
    const POLL_KIND: usize = 0;
    fn poll() -> Self {
        EchoEvent::Poll
    }
}

/// The TCP echo component; see the module documentation.
#[derive(Debug)]
pub struct Echo<U> {
    name: &'static str,
    settings: EchoSettings,
    listener: Option<TcpListener>,
    clients: Vec<TcpStream>,
    timer: Option<TimerHandle>,
    counters: Counters<2>,
    _events: PhantomData<fn() -> U>,
}

impl<U: EchoEvents> Echo<U> {
    /// A component named `name` (also its configuration key).
    pub fn new(name: &'static str) -> Self {
        Echo {
            name,
            settings: EchoSettings::default(),
            listener: None,
            clients: Vec::new(),
            timer: None,
            counters: Counters::new(),
            _events: PhantomData,
        }
    }

    /// The address it listens on, once started.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    fn schedule_poll(&mut self, ctx: &mut Context<'_, U, StdClock>) {
        let every = Duration::from_millis(self.settings.poll_ms.max(1));
        match ctx.schedule_every(every, U::poll()) {
            Ok(handle) => self.timer = Some(handle),
            Err(e) => log::error!("{}: cannot schedule its poll: {e}", self.name),
        }
    }

    /// Accepts who is waiting, echoes what came; never blocks.
    fn poll(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, _)) if stream.set_nonblocking(true).is_ok() => {
                    let _ = self.counters.inc("connections", 1);
                    self.clients.push(stream);
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::warn!("{}: accept: {e}", self.name);
                    break;
                }
            }
        }
        let mut buf = [0u8; 4096];
        let mut echoed = 0u64;
        self.clients.retain_mut(|client| loop {
            match client.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    if client.write_all(&buf[..n]).is_err() {
                        return false;
                    }
                    echoed += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        });
        let _ = self.counters.inc("bytes", echoed);
    }
}

impl<U: EchoEvents> Component<U, StdClock> for Echo<U> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn setup(&mut self, routes: &mut Routes<'_>) -> Result<(), RouteError> {
        routes.append(Kind::START)?;
        routes.append(Kind::STOP)?;
        routes.append(Kind::RELOAD)?;
        routes.append(Kind::user(U::POLL_KIND))?;
        let _ = self.counters.register("connections");
        let _ = self.counters.register("bytes");
        Ok(())
    }

    fn handle(&mut self, ctx: &mut Context<'_, U, StdClock>, event: &mut Event<U>) -> Flow {
        match event {
            Event::Start => self.schedule_poll(ctx),
            Event::Reload => {
                if let Some(handle) = self.timer.take() {
                    let _ = ctx.cancel(handle);
                }
                if !ctx.is_done() {
                    self.schedule_poll(ctx);
                }
            }
            Event::Stop => {
                if let Some(handle) = self.timer.take() {
                    let _ = ctx.cancel(handle);
                }
                // Last answers for what already came; new connections wait for the next run.
                self.poll();
                self.clients.clear();
                self.listener = None;
            }
            Event::User(u) if u.kind() == U::POLL_KIND => self.poll(),
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

impl<U: EchoEvents> Service<U> for Echo<U> {
    fn config_key(&self) -> Option<&'static str> {
        Some(self.name)
    }

    fn configure(&mut self, config: &Config) -> zendaemon::Result<()> {
        self.settings = config.component_or_default(self.name)?;
        Ok(())
    }

    fn acquire(&mut self, ctx: &mut Acquire<'_>) -> zendaemon::Result<()> {
        let (listener, how) = match ctx.listener(&self.settings.socket) {
            Some(fd) => (TcpListener::from(fd), "from systemd"),
            None => match &self.settings.listen {
                Some(addr) => {
                    let listener = TcpListener::bind(addr.as_str())
                        .map_err(|e| Error::Daemon(format!("cannot listen on '{addr}': {e}")))?;
                    (listener, "bound")
                }
                None => {
                    return Err(Error::Daemon(format!(
                        "no socket '{}' from systemd and no 'listen' address",
                        self.settings.socket
                    )))
                }
            },
        };
        let addr = listener.local_addr().map_err(|e| {
            Error::Daemon(format!(
                "socket '{}' is not a TCP socket: {e}",
                self.settings.socket
            ))
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Daemon(format!("cannot make the socket non-blocking: {e}")))?;
        log::info!("{}: listening on {addr} ({how})", self.name);
        self.listener = Some(listener);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn echoes_what_each_client_sends() {
        let mut echo = Echo::<EchoEvent>::new("echo");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        echo.listener = Some(listener);
        let mut a = TcpStream::connect(addr).unwrap();
        let mut b = TcpStream::connect(addr).unwrap();
        a.write_all(b"one\n").unwrap();
        b.write_all(b"two\n").unwrap();
        let mut got = [0u8; 4];
        a.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        b.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        for (stream, want) in [(&mut a, b"one\n"), (&mut b, b"two\n")] {
            let mut read = 0;
            for _ in 0..500 {
                echo.poll();
                match stream.read(&mut got[read..]) {
                    Ok(n) => read += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::TimedOut => {}
                    Err(e) => panic!("{e}"),
                }
                if read == 4 {
                    break;
                }
            }
            assert_eq!(&got, want);
        }
        assert_eq!(echo.clients.len(), 2);
        drop(a);
        for _ in 0..100 {
            echo.poll();
            if echo.clients.len() == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(echo.clients.len(), 1, "a closed client is dropped");
    }
}
