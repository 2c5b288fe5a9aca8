//! Runs zeta-mlx as a background service. This crate owns the service definitions — the typed
//! launchd agents `com.zeta.mlx` (daemon) and `com.zeta.mlx.gateway` (gateway) written through
//! the `plist` crate on macOS, and the systemd user units `zeta-mlxd.service` and
//! `zeta-gateway.service` on Linux — and the operations the `zeta service` subcommands call:
//! [`install`], [`uninstall`], [`status`] and [`logs`].
//!
//! Both service managers get the same policy: start at login, restart after a crash but not
//! after a clean exit (10 s apart), SIGTERM then 45 s before a kill (the daemon drains for
//! 30 s), 4096 open files, `HF_HOME` and `RUST_LOG` set explicitly, binaries by absolute path
//! from the installation prefix. Everything the operations would read from the process
//! environment (home folder, platform, XDG folders, uid, whether commands run) is in a [`Host`],
//! so tests run them against a temporary home without touching the real system.
//!
//! The committed `launchd/com.zeta.mlx.plist` and `launchd/com.zeta.mlx.gateway.plist` are
//! [`LaunchdJob::example`]: an install under `/usr/local` for the placeholder home
//! `/Users/you`. A test regenerates them and compares byte for byte; run it with
//! `ZETA_LAUNCHD_BLESS=1` to rewrite them after changing the generator.

mod host;
mod launchd;
mod ops;
mod report;
mod service;
mod systemd;

use std::path::PathBuf;

pub use host::{CommandOutput, CommandRunner, Host, Platform, SystemRunner};
pub use launchd::{KeepAlive, LaunchdJob, ProcessType, ResourceLimits, parse_launchctl_print};
pub use ops::{InstallOptions, install, logs, status, uninstall};
pub use report::{LogLocation, LogSource, RanCommand, Report, RunState, ServiceStatus, SkippedCommand, Status};
pub use service::{
    EXAMPLE_HOME, EXAMPLE_PREFIX, EXIT_MARGIN_SECS, EXIT_TIMEOUT_SECS, LogFormat, OPEN_FILES_LIMIT, RESTART_DELAY_SECS,
    Service, Settings, launch_agents_dir, macos_log_dir, systemd_user_dir,
};
pub use systemd::{parse_systemctl_show, unit as systemd_unit};

/// Why a service operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `HOME` is unset or empty, so there is nowhere to install per-user services.
    #[error("HOME is not set; per-user services need a home folder")]
    NoHome,
    /// A path that goes into a service file is relative or not UTF-8.
    #[error("{what} must be an absolute UTF-8 path, got {}", path.display())]
    InvalidPath {
        /// Which setting.
        what: &'static str,
        /// The offending path.
        path: PathBuf,
    },
    /// A setting has a value no service file can carry.
    #[error("{what} {value:?} is not valid")]
    InvalidValue {
        /// Which setting.
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// A service's binary is not where the installation says it is.
    #[error("{} does not exist or is not executable; install zeta-mlx first (`make install`), or run the `zeta` of that installation", path.display())]
    MissingBinary {
        /// The expected binary.
        path: PathBuf,
    },
    /// A service's own `--check` refused the settings it would be started with.
    #[error("`{command}` refuses these settings, so the service would not start; nothing was installed:\n{detail}")]
    Refused {
        /// The check's command line.
        command: String,
        /// What it said.
        detail: String,
    },
    /// Reading, writing or removing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A service-manager command could not be started at all.
    #[error("could not run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A service-manager command that must succeed failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and first line of output.
        detail: String,
    },
    /// A launchd job could not be written or read as a property list.
    #[error("property list: {0}")]
    Plist(String),
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
