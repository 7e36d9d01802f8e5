//! `echod`: the echo example component ([`zendaemon_examples::Echo`], configuration section
//! `"echo"`) as a daemon for the end-to-end tests of privileged start-up: a port bound in
//! `acquire` before `--user` drops root, and sockets passed by socket activation.

use std::process::ExitCode;

use zendaemon::Daemon;
use zendaemon_examples::{Echo, EchoEvent};

fn main() -> ExitCode {
    let mut echo = Echo::<EchoEvent>::new("echo");
    Daemon::<EchoEvent>::new("echod").component(&mut echo).run()
}
