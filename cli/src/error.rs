//! What can go wrong, as one-line messages a user can act on, and the exit code of each: the
//! daemon not running (with the commands that start it), a gRPC status from the daemon, a lost
//! connection, or a local failure.

use std::fmt;
use std::path::{Path, PathBuf};

use tonic::Code;

/// Exit status when the command ran but failed (a refused request, a local error).
pub const EXIT_FAILED: i32 = 1;
/// Exit status of a usage error (what clap uses for a bad command line).
pub const EXIT_USAGE: i32 = 2;
/// Exit status when nothing answers on the socket, so scripts can tell "not running" apart.
pub const EXIT_NO_DAEMON: i32 = 3;
/// Exit status after Ctrl-C, as shells report a SIGINT death.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Nothing usable answers on the socket.
    #[error("{}", no_daemon_message(socket, origin, why))]
    NoDaemon {
        /// The socket that was tried.
        socket: PathBuf,
        /// Where that path came from (`--socket`, the environment, ...).
        origin: String,
        /// What exactly failed.
        why: NoDaemonReason,
    },
    /// The socket path itself is unusable (too long).
    #[error("{0}")]
    Socket(String),
    /// The daemon refused or failed a request.
    #[error("{}", describe_status(.0))]
    Rpc(tonic::Status),
    /// The daemon went away in the middle of a call.
    #[error("lost the connection to the daemon at {}: {detail} (is it restarting? see `zeta service logs`)", socket.display())]
    Lost {
        /// The socket.
        socket: PathBuf,
        /// The transport's words.
        detail: String,
    },
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
    /// The command line (or standard input standing for an argument) is not a valid request.
    #[error("{0}")]
    Usage(String),
    /// Anything local: bad input, a service operation, I/O.
    #[error("{0}")]
    Other(String),
    /// Standard output was closed by its reader (`zeta models | head -1`).
    #[error("standard output was closed")]
    ClosedOutput,
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::NoDaemon { .. } | CliError::Lost { .. } => EXIT_NO_DAEMON,
            CliError::Interrupted => EXIT_INTERRUPTED,
            CliError::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILED,
        }
    }

    /// Turns a status from a call into the right error: a transport failure (the status carries
    /// the transport error as its source) means the daemon went away, anything else is the
    /// daemon's answer.
    pub fn from_status(status: tonic::Status, socket: &Path) -> CliError {
        let transport = zeta_proto::edge::transport_failed(&status);
        if transport && matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled) {
            return CliError::Lost { socket: socket.to_path_buf(), detail: first_line(status.message()).to_owned() };
        }
        CliError::Rpc(status)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return CliError::ClosedOutput;
        }
        CliError::Other(e.to_string())
    }
}

/// What failed when connecting.
#[derive(Debug)]
pub enum NoDaemonReason {
    /// No file at the socket path.
    Missing,
    /// A file is there but nothing accepts connections (a daemon that crashed).
    Refused,
    /// The socket or its folder belongs to someone else.
    PermissionDenied,
    /// The path exists but is not a socket.
    NotASocket,
    /// It connected but did not answer in time.
    Timeout,
    /// Anything else, in the OS's words.
    Other(String),
}

fn no_daemon_message(socket: &Path, origin: &str, why: &NoDaemonReason) -> String {
    let path = socket.display();
    let what = match why {
        NoDaemonReason::Missing => format!("the daemon is not running: no socket at {path} (from {origin})"),
        NoDaemonReason::Refused => {
            format!("the daemon is not running: nothing accepts connections on {path} (from {origin}; a stale socket)")
        }
        NoDaemonReason::PermissionDenied => {
            return format!(
                "permission denied on {path} (from {origin}): the socket belongs to another user; \
                 run zeta as the user running zeta-mlxd, or start your own daemon (`zeta-mlxd`)"
            );
        }
        NoDaemonReason::NotASocket => {
            return format!("{path} (from {origin}) is not a socket, so no daemon listens there; check the path");
        }
        NoDaemonReason::Timeout => {
            return format!(
                "the daemon at {path} (from {origin}) accepted the connection but did not answer; \
                 it may be stuck: see `zeta service logs`, restart it (`zeta service install` restarts the service)"
            );
        }
        NoDaemonReason::Other(e) => format!("cannot reach the daemon at {path} (from {origin}): {e}"),
    };
    let socket_flag = if origin == "--socket" { format!(" --socket {path}") } else { String::new() };
    format!(
        "{what}. Start it with `zeta-mlxd{socket_flag}` (in a terminal), `zeta service install` (as a background service), \
         or `make run` (in the source checkout)"
    )
}

/// A daemon status as one line: what kind of failure, then the daemon's own message (which
/// names the field, value and limit), then a hint where one helps.
pub fn describe_status(s: &tonic::Status) -> String {
    let msg = first_line(s.message());
    let param = s.metadata().get("zeta-param").and_then(|v| v.to_str().ok());
    let retry = s.metadata().get("retry-after").and_then(|v| v.to_str().ok());
    let retry_hint = retry.map(|r| format!("; try again in {r} s")).unwrap_or_default();
    match s.code() {
        // The daemon's messages usually say "invalid <field>: ..." themselves.
        Code::InvalidArgument if msg.starts_with("invalid") => msg.to_owned(),
        Code::InvalidArgument => match param {
            Some(p) if !msg.contains(p) => format!("invalid {p}: {msg}"),
            _ => format!("invalid request: {msg}"),
        },
        Code::NotFound => format!("{msg} (see `zeta models`)"),
        Code::OutOfRange => format!("too long: {msg}"),
        Code::ResourceExhausted => format!("the daemon is busy: {msg}{retry_hint}"),
        Code::Unavailable => format!("the daemon cannot do that now: {msg}{retry_hint}"),
        Code::PermissionDenied => format!("permission denied: {msg}"),
        Code::Unauthenticated => format!("not authenticated: {msg}"),
        Code::Cancelled => format!("cancelled: {msg}"),
        Code::DeadlineExceeded => format!("timed out: {msg}"),
        Code::Unimplemented => format!(
            "the daemon does not support this call ({msg}); it is probably older than this zeta: \
             install both from one checkout (`make install`)"
        ),
        Code::FailedPrecondition => format!("not possible now: {msg}"),
        Code::AlreadyExists | Code::Aborted => format!("conflict: {msg}"),
        Code::Internal | Code::Unknown | Code::DataLoss | Code::Ok => {
            format!("the daemon failed: {msg} (details in its log: `zeta service logs`)")
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// Writes `zeta: <message>` for the user.
pub struct Shown<'a>(pub &'a CliError);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zeta: {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_daemon_names_the_socket_and_the_starters() {
        let e = CliError::NoDaemon {
            socket: PathBuf::from("/tmp/x/zeta.sock"),
            origin: "--socket".into(),
            why: NoDaemonReason::Missing,
        };
        let m = e.to_string();
        assert!(m.contains("/tmp/x/zeta.sock"), "{m}");
        assert!(m.contains("zeta-mlxd --socket /tmp/x/zeta.sock"), "{m}");
        assert!(m.contains("zeta service install") && m.contains("make run"), "{m}");
        assert!(!m.contains('\n'));
        assert_eq!(e.exit_code(), EXIT_NO_DAEMON);
    }

    #[test]
    fn statuses_become_one_line() {
        let mut s = tonic::Status::invalid_argument("-1 is below the minimum 0\nmore");
        s.metadata_mut().insert("zeta-param", "temperature".parse().unwrap());
        assert_eq!(describe_status(&s), "invalid temperature: -1 is below the minimum 0");
        let s = tonic::Status::invalid_argument("invalid temperature: -1 is below the minimum 0");
        assert_eq!(describe_status(&s), "invalid temperature: -1 is below the minimum 0");
        let s = tonic::Status::invalid_argument("bad value");
        assert_eq!(describe_status(&s), "invalid request: bad value");
        let mut s = tonic::Status::resource_exhausted("64 queued");
        s.metadata_mut().insert("retry-after", "1".parse().unwrap());
        assert_eq!(describe_status(&s), "the daemon is busy: 64 queued; try again in 1 s");
        assert!(describe_status(&tonic::Status::not_found("no model 'x'")).starts_with("no model 'x' (see"));
        let e = CliError::from_status(tonic::Status::internal("boom"), Path::new("/s"));
        assert!(matches!(e, CliError::Rpc(_)));
        assert_eq!(e.exit_code(), EXIT_FAILED);
    }
}
