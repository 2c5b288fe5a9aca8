//! The connection to the daemon: the socket path from the shared resolver, a connect that turns
//! every way of failing into a message naming the socket and the command that starts the
//! daemon, and the three gRPC clients over one channel.

use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::Channel;
use zeta_proto::v1;
use zeta_proto::v1::daemon_client::DaemonClient;
use zeta_proto::v1::generation_client::GenerationClient;
use zeta_proto::v1::models_client::ModelsClient;

use crate::error::{CliError, NoDaemonReason};

/// How long a connect may take. A Unix-socket connect is instant unless the daemon's accept
/// loop is stuck; waiting longer would only hide that.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a quick call (list, status, unload) may take. Loads, generations and tokenizing
/// (which may load the model first) get no limit: their time depends on the model.
pub const QUICK_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected daemon.
pub struct Daemon {
    /// The socket it answered on.
    pub socket: PathBuf,
    channel: Channel,
}

impl Daemon {
    /// Resolves the socket (`--socket`, `ZETA_MLX_SOCKET`, the config file's `socket`, the
    /// per-user default) and connects.
    pub async fn connect(socket_flag: Option<&Path>, config_flag: Option<&Path>) -> Result<Daemon, CliError> {
        let (socket, origin) = zeta_proto::socket::resolve(socket_flag, config_flag).map_err(CliError::Socket)?;
        let no_daemon = |why| CliError::NoDaemon { socket: socket.clone(), origin: origin.to_string(), why };
        // Look before connecting: the connect error alone cannot tell a missing socket from a
        // socket in a folder we may not enter, and those need different advice.
        match std::fs::metadata(&socket) {
            Ok(m) if !m.file_type().is_socket() => return Err(no_daemon(NoDaemonReason::NotASocket)),
            // The daemon serves its own user (and root) only, and closes anyone else's
            // connection unanswered: say so rather than report a lost connection.
            Ok(m) if m.uid() != my_uid() && my_uid() != 0 => {
                return Err(no_daemon(NoDaemonReason::PermissionDenied));
            }
            Ok(_) => {}
            Err(e) => return Err(no_daemon(reason(&e))),
        }
        let channel = match tokio::time::timeout(CONNECT_TIMEOUT, zeta_proto::socket::connect(&socket)).await {
            Err(_) => return Err(no_daemon(NoDaemonReason::Timeout)),
            Ok(Err(e)) => return Err(no_daemon(transport_reason(&e))),
            Ok(Ok(ch)) => ch,
        };
        Ok(Daemon { socket, channel })
    }

    /// A `Models` client.
    pub fn models(&self) -> ModelsClient<Channel> {
        ModelsClient::new(self.channel.clone()).max_decoding_message_size(zeta_proto::MAX_MESSAGE_BYTES)
    }

    /// A `Generation` client.
    pub fn generation(&self) -> GenerationClient<Channel> {
        GenerationClient::new(self.channel.clone())
            .max_decoding_message_size(zeta_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(zeta_proto::MAX_MESSAGE_BYTES)
    }

    /// A `Daemon` client.
    pub fn daemon(&self) -> DaemonClient<Channel> {
        DaemonClient::new(self.channel.clone())
    }

    /// Maps a failed call's status to the error to show.
    pub fn err(&self, status: tonic::Status) -> CliError {
        CliError::from_status(status, &self.socket)
    }

    /// The daemon's status, within [`QUICK_CALL_TIMEOUT`].
    pub async fn status(&self) -> Result<v1::DaemonStatus, CliError> {
        let req = quick(v1::GetStatusRequest {});
        Ok(self.daemon().get_status(req).await.map_err(|s| self.err(s))?.into_inner())
    }

    /// Every model the daemon knows, within [`QUICK_CALL_TIMEOUT`].
    pub async fn list(&self) -> Result<v1::ListModelsResponse, CliError> {
        let req = quick(v1::ListModelsRequest {});
        Ok(self.models().list_models(req).await.map_err(|s| self.err(s))?.into_inner())
    }
}

/// A request that must be answered within [`QUICK_CALL_TIMEOUT`].
pub fn quick<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(QUICK_CALL_TIMEOUT);
    req
}

fn my_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn reason(e: &io::Error) -> NoDaemonReason {
    match e.kind() {
        io::ErrorKind::NotFound => NoDaemonReason::Missing,
        io::ErrorKind::ConnectionRefused => NoDaemonReason::Refused,
        io::ErrorKind::PermissionDenied => NoDaemonReason::PermissionDenied,
        _ => NoDaemonReason::Other(e.to_string()),
    }
}

/// The OS error under a transport error, found by walking its sources.
fn transport_reason(e: &tonic::transport::Error) -> NoDaemonReason {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return reason(io);
        }
        source = s.source();
    }
    NoDaemonReason::Other(e.to_string())
}
