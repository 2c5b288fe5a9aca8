//! `zeta`: the command-line client of zeta-mlx. It talks to the daemon only through the public
//! gRPC API on its Unix socket (`zeta models`, `ps`, `load`, `unload`, `run`, `tokens`,
//! `status`), the same way any local tool may, and runs the daemon and gateway as a service
//! (`zeta service ...`, through `zeta_launchd`). It links no MLX.
//!
//! Exit status: 0 on success, 1 when a request or operation failed, 2 for a usage error, 3 when
//! no daemon answers on the socket (or it went away mid-call), 130 after Ctrl-C.
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `print!` that hands a failed write back (`zeta status > /dev/full`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout(), format_args!($($arg)*))
    };
}

/// `println!` that hands a failed write back instead of panicking.
macro_rules! outln {
    () => {
        std::io::Write::write_all(&mut std::io::stdout(), b"\n")
    };
    ($($arg:tt)*) => {{
        let mut stdout = std::io::stdout().lock();
        std::io::Write::write_fmt(&mut stdout, format_args!($($arg)*))
            .and_then(|()| std::io::Write::write_all(&mut stdout, b"\n"))
    }};
}

mod args;
mod client;
mod commands;
mod error;
mod format;
mod progress;

use std::io::Write as _;

use clap::Parser as _;

use crate::args::{Cli, Command};
use crate::client::Daemon;
use crate::error::{CliError, Shown};

fn main() {
    // SIGPIPE stays ignored (Rust's default): a closed socket must be an error the CLI reports,
    // not a silent death. Output piped into `head` ends in an EPIPE write instead, which exits
    // quietly below (`CliError::ClosedOutput`).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // clap's own `exit` ignores a failed write: `zeta --help > /dev/full` would say 0.
        Err(e) => {
            let code = match e.print().and_then(|()| std::io::stdout().flush()) {
                Err(err) if !e.use_stderr() => {
                    eprintln!("zeta: could not write to standard output: {err}");
                    1
                }
                _ => e.exit_code(),
            };
            std::process::exit(code);
        }
    };
    // Output still buffered must reach its file too: a full disk is a failure, not a success.
    let result = run(cli).and_then(|()| std::io::stdout().flush().map_err(CliError::from));
    let code = match result {
        Ok(()) => 0,
        // As a shell reports a death by SIGPIPE, with nothing to say: the reader left.
        Err(CliError::ClosedOutput) => 141,
        Err(e) => {
            eprintln!("{}", Shown(&e));
            e.exit_code()
        }
    };
    // Exit without waiting on the runtime: a chat's stdin reader thread may still be blocked.
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Service(cmd) = &cli.command {
        return commands::service::service(cmd, cli.socket.as_deref(), cli.config.as_deref());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("could not start the async runtime: {e}")))?;
    runtime.block_on(async {
        let d = Daemon::connect(cli.socket.as_deref(), cli.config.as_deref()).await?;
        match &cli.command {
            Command::Models => commands::models::models(&d).await,
            Command::Ps => commands::models::ps(&d).await,
            Command::Load { model } => commands::load::load(&d, model).await,
            Command::Unload { model, force } => commands::load::unload(&d, model, *force).await,
            Command::Run(args) => commands::run::run(&d, args).await,
            Command::Tokens(args) => commands::tokens::tokens(&d, args).await,
            Command::Status => commands::status::status(&d).await,
            Command::Service(_) => unreachable!("handled above"),
        }
    })
}
