//! Logs through `tracing` (the subscriber shared with the gateway, `zeta_proto::logging`), as
//! human-readable lines or JSON objects, filtered by `RUST_LOG` (default `info`), always on
//! standard error (launchd and systemd collect it there).

use crate::config::LogFormat;

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    zeta_proto::logging::init(format == LogFormat::Json);
}
