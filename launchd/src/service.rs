//! The two services (daemon and gateway), their fixed names, and the settings that end up in
//! their launchd agents and systemd units: installation prefix, flags and environment.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::Error;

/// Open-file limit for both services. The daemon keeps every loaded model's weight files, the
/// socket and one descriptor per client open; macOS's launchd default of 256 runs out under a
/// handful of concurrent clients with two or three models loaded.
pub const OPEN_FILES_LIMIT: u64 = 4096;

/// Seconds the service manager waits after SIGTERM before it kills the process. The daemon
/// drains in-flight requests for up to 30 s by default; the extra 15 s covers unloading models
/// and flushing logs so a clean shutdown is never cut off.
pub const EXIT_TIMEOUT_SECS: u64 = 45;

/// What the service manager's wait adds to the daemon's configured drain time.
pub const EXIT_MARGIN_SECS: u64 = 15;

/// Seconds between a crash and the restart. Long enough that a daemon failing at startup (bad
/// config, missing model) does not spin, short enough that a real crash is barely noticed.
pub const RESTART_DELAY_SECS: u64 = 10;

/// Prefix of the committed example agents: `/usr/local`, the conventional prefix on macOS.
pub const EXAMPLE_PREFIX: &str = "/usr/local";

/// Home folder of the committed example agents. A placeholder user, so the committed files
/// show the shape of a real install without naming anyone's account.
pub const EXAMPLE_HOME: &str = "/Users/you";

/// One of the two processes that run as a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// `zeta-mlxd`, the stateful daemon on the Unix socket.
    Daemon,
    /// `zeta-gateway`, the stateless OpenAI HTTP gateway in front of the daemon.
    Gateway,
}

impl Service {
    /// Both services, in the order they start (the gateway needs the daemon).
    pub const ALL: [Service; 2] = [Service::Daemon, Service::Gateway];

    /// The launchd label, also the plist's file stem.
    pub fn label(self) -> &'static str {
        match self {
            Service::Daemon => "com.zeta.mlx",
            Service::Gateway => "com.zeta.mlx.gateway",
        }
    }

    /// The launchd agent's file name, e.g. `com.zeta.mlx.plist`.
    pub fn plist_file_name(self) -> String {
        format!("{}.plist", self.label())
    }

    /// The binary's file name under `<prefix>/bin`.
    pub fn binary_name(self) -> &'static str {
        match self {
            Service::Daemon => "zeta-mlxd",
            Service::Gateway => "zeta-gateway",
        }
    }

    /// The systemd user unit's name, e.g. `zeta-mlxd.service`.
    pub fn unit_name(self) -> String {
        format!("{}.service", self.binary_name())
    }

    /// The log file's name under `~/Library/Logs/zeta-mlx` (macOS).
    pub fn log_file_name(self) -> String {
        format!("{}.log", self.binary_name())
    }

    /// A one-line description for unit files and messages.
    pub fn description(self) -> &'static str {
        match self {
            Service::Daemon => "zeta-mlx daemon (MLX models over gRPC on a Unix socket)",
            Service::Gateway => "zeta-mlx gateway (OpenAI-compatible HTTP API)",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary_name())
    }
}

/// The daemon's log line format (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines: what someone reading `~/Library/Logs` or the journal expects.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// What the services run: where the binaries are and which flags and environment they get.
///
/// The socket and config are left to the binaries' shared defaults unless set. Both services
/// and the `zeta` CLI resolve those defaults the same way (from `HOME` on macOS and
/// `XDG_RUNTIME_DIR` on Linux, which launchd and the systemd user manager both provide), so
/// they meet on one socket without pinning a path that would override the config file's
/// `socket` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Installation prefix; the binaries are `<prefix>/bin/zeta-mlxd` and `<prefix>/bin/zeta-gateway`.
    pub prefix: PathBuf,
    /// The binaries' folder when it is not `<prefix>/bin` (a build's `target/release`).
    pub bin: Option<PathBuf>,
    /// Seconds the service manager waits after SIGTERM before a kill: the daemon's
    /// `drain_timeout_seconds` plus [`EXIT_MARGIN_SECS`].
    pub exit_timeout_secs: u64,
    /// `--socket` for both services, if set.
    pub socket: Option<PathBuf>,
    /// `--config` for the daemon (and `ZETA_MLX_CONFIG` for the gateway, which reads the
    /// socket from it), if set.
    pub config: Option<PathBuf>,
    /// The gateway's `--listen` address.
    pub listen: String,
    /// The daemon's `--log-format`.
    pub log_format: LogFormat,
    /// `RUST_LOG` for both services.
    pub rust_log: String,
    /// The Hugging Face cache settings (`HF_HOME`, `HF_HUB_CACHE`) of the shell that installed
    /// the services, when set to absolute paths: the daemon downloads into, and reuses, the cache
    /// the user's Python tools use.
    pub hf_env: Vec<(String, String)>,
}

impl Settings {
    /// Settings for an installation under `prefix`, with every other value at its default.
    pub fn new(prefix: impl Into<PathBuf>) -> Self {
        Settings {
            prefix: prefix.into(),
            bin: None,
            exit_timeout_secs: EXIT_TIMEOUT_SECS,
            socket: None,
            config: None,
            listen: "127.0.0.1:8000".to_owned(),
            log_format: LogFormat::Text,
            rust_log: "info".to_owned(),
            hf_env: Vec::new(),
        }
    }

    /// Settings for the installation the running program belongs to: the prefix is the folder
    /// above the `bin/` holding the current executable (symlinks resolved), so `zeta service
    /// install` run from `~/.local/bin/zeta` installs services for `~/.local`. From a folder not
    /// named `bin` (a build's `target/release`) the services run the binaries beside it.
    pub fn for_current_exe() -> Result<Self, Error> {
        let exe =
            std::env::current_exe().map_err(|e| Error::Io { path: PathBuf::from("current executable"), source: e })?;
        let exe = exe.canonicalize().map_err(|e| Error::Io { path: exe.clone(), source: e })?;
        let dir = exe.parent().ok_or_else(|| Error::InvalidPath { what: "installation prefix", path: exe.clone() })?;
        let prefix = dir.parent().unwrap_or(dir);
        let mut settings = Settings::new(prefix);
        if dir.file_name().is_none_or(|n| n != "bin") {
            settings.bin = Some(dir.to_path_buf());
        }
        Ok(settings)
    }

    /// The absolute path of a service's binary.
    pub fn binary(&self, service: Service) -> PathBuf {
        self.bin.clone().unwrap_or_else(|| self.prefix.join("bin")).join(service.binary_name())
    }

    /// The service's full command line, binary first.
    pub fn program_arguments(&self, service: Service) -> Vec<String> {
        let mut args = vec![display(&self.binary(service))];
        match service {
            Service::Daemon => {
                if let Some(config) = &self.config {
                    args.extend(["--config".to_owned(), display(config)]);
                }
                if let Some(socket) = &self.socket {
                    args.extend(["--socket".to_owned(), display(socket)]);
                }
                args.extend(["--log-format".to_owned(), self.log_format.as_str().to_owned()]);
            }
            Service::Gateway => {
                args.extend(["--listen".to_owned(), self.listen.clone()]);
                if let Some(socket) = &self.socket {
                    args.extend(["--socket".to_owned(), display(socket)]);
                }
            }
        }
        args
    }

    /// The service's command line as a shell runs it, with the environment it needs beyond the
    /// user's own (the gateway's config file), for running the services by hand.
    pub fn shell_command(&self, service: Service) -> String {
        let command = crate::report::shell_words(&self.program_arguments(service));
        match (&self.config, service) {
            (Some(config), Service::Gateway) => {
                format!("ZETA_MLX_CONFIG={} {command}", crate::report::shell_words(&[display(config)]))
            }
            _ => command,
        }
    }

    /// The service's environment. Service managers start processes with an almost empty
    /// environment, so whatever the user's shell would have provided is set here explicitly.
    pub fn environment(&self, service: Service, home: &Path) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        // The daemon's hub downloads land where the Python tools put them, so models already
        // fetched by mlx-lm or huggingface-cli are reused.
        env.insert("HF_HOME".to_owned(), display(&home.join(".cache/huggingface")));
        env.extend(self.hf_env.iter().cloned());
        env.insert("RUST_LOG".to_owned(), self.rust_log.clone());
        if service == Service::Gateway {
            // The gateway has no --config flag but finds the socket through the config file's
            // `socket` key, so it must read the same file as the daemon.
            if let Some(config) = &self.config {
                env.insert("ZETA_MLX_CONFIG".to_owned(), display(config));
            }
        }
        env
    }

    /// Checks that every path that goes into a service file is absolute and UTF-8.
    pub fn validate(&self) -> Result<(), Error> {
        require_absolute("installation prefix", &self.prefix)?;
        if let Some(bin) = &self.bin {
            require_absolute("binaries folder", bin)?;
        }
        if let Some(socket) = &self.socket {
            require_absolute("socket path", socket)?;
        }
        if let Some(config) = &self.config {
            require_absolute("config file", config)?;
        }
        if self.listen.trim().is_empty() {
            return Err(Error::InvalidValue { what: "listen address", value: self.listen.clone() });
        }
        Ok(())
    }
}

/// Where a service writes its output on macOS: `~/Library/Logs/zeta-mlx/`, where Console.app
/// and Mac users look.
pub fn macos_log_dir(home: &Path) -> PathBuf {
    home.join("Library/Logs/zeta-mlx")
}

/// Where per-user launchd agents live.
pub fn launch_agents_dir(home: &Path) -> PathBuf {
    home.join("Library/LaunchAgents")
}

/// Where systemd looks for user units: `$XDG_CONFIG_HOME/systemd/user`, or
/// `~/.config/systemd/user`. A relative `XDG_CONFIG_HOME` is ignored, as the XDG spec says.
pub fn systemd_user_dir(home: &Path, xdg_config_home: Option<&Path>) -> PathBuf {
    xdg_config_home
        .filter(|p| p.is_absolute())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| home.join(".config"))
        .join("systemd/user")
}

/// Service files are text: a path must be absolute (a service manager resolves nothing against
/// the user's shell) and valid UTF-8 (neither launchd nor systemd could be handed it otherwise).
pub(crate) fn require_absolute(what: &'static str, path: &Path) -> Result<(), Error> {
    if path.is_absolute() && path.to_str().is_some() {
        Ok(())
    } else {
        Err(Error::InvalidPath { what, path: path.to_path_buf() })
    }
}

/// Paths go into text files; `validate` has already refused non-UTF-8 ones, so lossy
/// conversion only ever affects paths that never reach a service manager.
pub(crate) fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
