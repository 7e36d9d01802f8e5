//! `echo`: a TCP echo daemon made of one [`Echo`] component.
//!
//! ```sh
//! # Bind a low port as root, serve it as nobody:
//! echo --user nobody --config-file echo.conf    # echo.conf: {"echo": {"listen": "0.0.0.0:7"}}
//! # Or let systemd pass the socket (echo.socket with FileDescriptorName=echo).
//! ```

use std::process::ExitCode;

use zendaemon::Daemon;
use zendaemon_examples::{Echo, EchoEvent};

fn main() -> ExitCode {
    let mut echo = Echo::<EchoEvent>::new("echo");
    Daemon::<EchoEvent>::new("echo").component(&mut echo).run()
}
