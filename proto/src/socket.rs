//! Where the daemon's socket is, and how to connect to it.
//!
//! Resolution order, the same for every binary: the `--socket` flag, then `ZETA_MLX_SOCKET`,
//! then the `socket` key of the daemon's config file (`--config`, `ZETA_MLX_CONFIG`, or the
//! per-user default), then a per-user default. Defaults are short and free of spaces because
//! macOS caps socket paths at 104 bytes: `$XDG_RUNTIME_DIR/zeta-mlx/zeta.sock` on Linux,
//! `~/.zeta-mlx/zeta.sock` on macOS, and `/tmp/zeta-mlx-<uid>/zeta.sock` when those are unusable.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Environment variable naming the socket.
pub const SOCKET_ENV: &str = "ZETA_MLX_SOCKET";
/// Environment variable naming the daemon's config file.
pub const CONFIG_ENV: &str = "ZETA_MLX_CONFIG";

/// The longest socket path every platform accepts (macOS: 104 bytes including the NUL).
pub const MAX_SOCKET_PATH: usize = 103;

/// Where a socket path came from, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `--socket`.
    Flag,
    /// `ZETA_MLX_SOCKET`.
    Env,
    /// The config file's `socket` key.
    Config,
    /// The per-user default.
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Flag => "--socket",
            Origin::Env => SOCKET_ENV,
            Origin::Config => "the config file",
            Origin::Default => "the default",
        })
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// A path written in a config file in `dir`, as the daemon and its clients read it: `~/...` is
/// under the home folder (a shell's habit, which a config file would otherwise take as a folder
/// named `~`), other relative paths are relative to the file (launchd starts the daemon in `/`).
pub fn config_relative(path: &Path, dir: &Path) -> PathBuf {
    if let (Ok(rest), Some(home)) = (path.strip_prefix("~"), home()) {
        return home.join(rest);
    }
    if path.is_relative() {
        return std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()).join(path);
    }
    path.to_path_buf()
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn usable(p: &Path) -> bool {
    let s = p.as_os_str().to_string_lossy();
    s.len() <= MAX_SOCKET_PATH && !s.contains(char::is_whitespace)
}

/// The per-user default socket path.
pub fn default_socket_path() -> PathBuf {
    let preferred = if cfg!(target_os = "macos") {
        home().map(|h| h.join(".zeta-mlx/zeta.sock"))
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|d| !d.is_empty())
            .map(|d| PathBuf::from(d).join("zeta-mlx/zeta.sock"))
    };
    preferred.filter(|p| usable(p)).unwrap_or_else(|| PathBuf::from(format!("/tmp/zeta-mlx-{}/zeta.sock", uid())))
}

/// The per-user default config file path (it need not exist).
pub fn default_config_path() -> Option<PathBuf> {
    if cfg!(target_os = "macos") {
        home().map(|h| h.join("Library/Application Support/zeta-mlx/config.toml"))
    } else {
        std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| home().map(|h| h.join(".config")))
            .map(|c| c.join("zeta-mlx/config.toml"))
    }
}

/// `ZETA_MLX_CONFIG`, unless unset or empty (an empty one is unset for every program).
fn config_env() -> Option<PathBuf> {
    std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Where a config file was asked for by name (`--config` or `ZETA_MLX_CONFIG`), when it was:
/// such a file must exist; the default one may be absent.
pub fn config_asked_by(flag: Option<&Path>) -> Option<&'static str> {
    if flag.is_some() { Some("--config") } else { config_env().map(|_| CONFIG_ENV) }
}

/// The config file in effect: `--config`, `ZETA_MLX_CONFIG`, or the default.
pub fn config_path(flag: Option<&Path>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf).or_else(config_env).or_else(default_config_path)
}

/// The keys of the daemon's config file that its clients need too.
#[derive(serde::Deserialize)]
struct ClientKeys {
    socket: Option<PathBuf>,
    drain_timeout_seconds: Option<u64>,
}

/// Whether a config file is YAML (by its extension, in any case), else TOML.
pub fn is_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// Those keys; `None` when the file does not exist, an error when it cannot be read or parsed
/// (the daemon reports such a file precisely when it starts).
fn client_keys(path: &Path) -> Result<Option<ClientKeys>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    // An editor's byte-order mark is no part of the document.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if is_yaml(path) {
        return serde_yaml::from_str(text).map(Some).map_err(|e| e.to_string());
    }
    // One line, as a client prints it: toml's own rendering draws the source over several.
    toml::from_str(text).map(Some).map_err(|e: toml::de::Error| match e.span() {
        Some(span) => format!("line {}: {}", text[..span.start].matches('\n').count() + 1, e.message()),
        None => e.message().to_string(),
    })
}

/// The `drain_timeout_seconds` of a config file, if it exists and sets it (a service manager
/// must wait that long, and a little more, before killing the daemon).
pub fn drain_timeout_from_config(path: &Path) -> Option<u64> {
    client_keys(path).ok()??.drain_timeout_seconds
}

/// The `socket` key of a config file, if the file exists and sets it.
fn socket_from_config(path: &Path) -> Result<Option<PathBuf>, String> {
    let Some(parsed) = client_keys(path)? else { return Ok(None) };
    let Some(socket) = parsed.socket else { return Ok(None) };
    // Refused as the daemon refuses it, so no client quietly talks to another socket.
    if socket.as_os_str().is_empty() {
        return Err("socket: is empty".into());
    }
    Ok(Some(config_relative(&socket, path.parent().unwrap_or(Path::new(".")))))
}

/// The socket a config file names, or the default. A file asked for by `--config` or
/// `ZETA_MLX_CONFIG` must exist and parse: a typo in its name would otherwise send a client to
/// another daemon's socket without a word.
fn socket_of_config(config_flag: Option<&Path>) -> Result<(PathBuf, Origin), String> {
    let explicit = config_asked_by(config_flag);
    let Some(path) = config_path(config_flag) else { return Ok((default_socket_path(), Origin::Default)) };
    match (socket_from_config(&path), explicit) {
        (Ok(Some(p)), _) => Ok((p, Origin::Config)),
        (Ok(None), Some(from)) if !path.exists() => {
            Err(format!("the config file {} (from {from}) does not exist", path.display()))
        }
        (Err(e), Some(from)) => Err(format!("the config file {} (from {from}) cannot be used: {e}", path.display())),
        _ => Ok((default_socket_path(), Origin::Default)),
    }
}

/// Resolves the socket path. Errors when the chosen path is too long for a Unix socket.
pub fn resolve(flag: Option<&Path>, config_flag: Option<&Path>) -> Result<(PathBuf, Origin), String> {
    let (path, origin) = if let Some(p) = flag {
        (p.to_path_buf(), Origin::Flag)
    } else if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|v| !v.is_empty()) {
        (PathBuf::from(p), Origin::Env)
    } else {
        socket_of_config(config_flag)?
    };
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "socket path {} (from {origin}) is {len} bytes; Unix sockets allow at most {MAX_SOCKET_PATH}",
            path.display()
        ));
    }
    Ok((path, origin))
}

fn endpoint() -> Endpoint {
    // The authority is unused: every connection goes to the socket.
    Endpoint::from_static("http://zeta-mlxd.local")
}

fn connector(
    path: PathBuf,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TokioIo<tokio::net::UnixStream>>> + Send,
> + Clone
+ Send {
    tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
    })
}

/// Connects to the daemon now; fails if nothing listens on the socket.
pub async fn connect(path: &Path) -> Result<Channel, tonic::transport::Error> {
    endpoint().connect_with_connector(connector(path.to_path_buf())).await
}

/// A channel that connects on first use and reconnects by itself after the daemon restarts.
pub fn connect_lazy(path: &Path) -> Channel {
    endpoint().connect_with_connector_lazy(connector(path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_socket_in_a_config_file_is_relative_to_the_file() {
        let dir = std::env::temp_dir().join(format!("zeta-socket-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "socket = \"run/z.sock\"\n").unwrap();
        assert_eq!(socket_from_config(&file), Ok(Some(dir.join("run/z.sock"))));
        std::fs::write(&file, "socket = \"/abs/z.sock\"\n").unwrap();
        assert_eq!(socket_from_config(&file), Ok(Some(PathBuf::from("/abs/z.sock"))));
        // An empty one is refused, as the daemon refuses it, not read as the default.
        std::fs::write(&file, "socket = \"\"\n").unwrap();
        assert_eq!(socket_from_config(&file), Err("socket: is empty".into()));
        std::fs::write(&file, "max_batch = 2\n").unwrap();
        assert_eq!(socket_from_config(&file), Ok(None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
