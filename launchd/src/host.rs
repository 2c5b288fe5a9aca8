//! The machine the services are installed on: platform, home folder, user id, and the one
//! place that runs `launchctl` / `systemctl`, injectable so tests never touch the real system.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::Error;
use crate::service::require_absolute;

/// Which service manager the host uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// launchd agents in `~/Library/LaunchAgents`.
    MacOs,
    /// systemd user units in `~/.config/systemd/user`.
    Linux,
}

impl Platform {
    /// The platform this program was built for; every other Unix is treated as Linux, since
    /// systemd is the only other service manager supported.
    pub fn current() -> Self {
        if cfg!(target_os = "macos") { Platform::MacOs } else { Platform::Linux }
    }
}

/// What a finished command printed and how it exited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl CommandOutput {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The most useful one-line description of a failure: stderr, else stdout, else the code.
    pub fn summary(&self) -> String {
        let text = if self.stderr.trim().is_empty() { self.stdout.trim() } else { self.stderr.trim() };
        let code = self.code.map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit code {c}"));
        if text.is_empty() { code } else { format!("{code}: {}", text.lines().next().unwrap_or(text)) }
    }
}

/// Runs the service manager's command-line tools. Implemented by [`SystemRunner`] for real
/// use; tests substitute one that records the calls and returns canned output.
pub trait CommandRunner: Send + Sync {
    /// Runs `program` with `args` to completion. An `Err` means it could not be started
    /// (`ErrorKind::NotFound` when the program is not installed).
    fn run(&self, program: &str, args: &[String]) -> io::Result<CommandOutput>;
}

/// Runs commands for real, with the caller's environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run(&self, program: &str, args: &[String]) -> io::Result<CommandOutput> {
        tracing::debug!(program, ?args, "running");
        let out = Command::new(program).args(args).stdin(std::process::Stdio::null()).output()?;
        Ok(CommandOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Where and how services are installed: everything the operations would otherwise read from
/// the process environment, so a test can point them at a temporary home and a fake runner.
#[derive(Clone)]
pub struct Host {
    /// Which service manager to write for and drive.
    pub platform: Platform,
    /// The user's home folder (absolute).
    pub home: PathBuf,
    /// `XDG_CONFIG_HOME`, if set (Linux).
    pub xdg_config_home: Option<PathBuf>,
    /// `XDG_RUNTIME_DIR`, if set (Linux). Without it `systemctl --user` cannot reach the user
    /// manager, so its absence is reported as the reason the systemctl steps are skipped.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// The user's numeric id, for launchd's `gui/<uid>` domain.
    pub uid: u32,
    /// Runs `launchctl` / `systemctl`; `None` writes and removes files only and reports every
    /// command it would have run as skipped.
    pub runner: Option<Arc<dyn CommandRunner>>,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("platform", &self.platform)
            .field("home", &self.home)
            .field("xdg_config_home", &self.xdg_config_home)
            .field("xdg_runtime_dir", &self.xdg_runtime_dir)
            .field("uid", &self.uid)
            .field("runs_commands", &self.runner.is_some())
            .finish()
    }
}

impl Host {
    /// The real host: this platform, `HOME`, the XDG variables, the real uid, and commands
    /// run for real.
    pub fn from_env() -> Result<Self, Error> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = var("HOME").ok_or(Error::NoHome)?;
        let host = Host {
            platform: Platform::current(),
            home,
            xdg_config_home: var("XDG_CONFIG_HOME"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            uid: current_uid(),
            runner: Some(Arc::new(SystemRunner)),
        };
        host.validate()?;
        Ok(host)
    }

    /// A host that only writes files: given platform and home, no XDG overrides, the real
    /// uid, and no commands run. The starting point for tests and dry runs.
    pub fn files_only(platform: Platform, home: impl Into<PathBuf>) -> Self {
        Host {
            platform,
            home: home.into(),
            xdg_config_home: None,
            xdg_runtime_dir: None,
            uid: current_uid(),
            runner: None,
        }
    }

    /// Checks the home folder is absolute; every generated path hangs off it.
    pub fn validate(&self) -> Result<(), Error> {
        require_absolute("home folder", &self.home)
    }

    /// The folder the service files go to on this host.
    pub fn service_dir(&self) -> PathBuf {
        match self.platform {
            Platform::MacOs => crate::service::launch_agents_dir(&self.home),
            Platform::Linux => crate::service::systemd_user_dir(&self.home, self.xdg_config_home.as_deref()),
        }
    }

    /// The file a service's definition is written to on this host.
    pub fn service_file(&self, service: crate::Service) -> PathBuf {
        let name = match self.platform {
            Platform::MacOs => service.plist_file_name(),
            Platform::Linux => service.unit_name(),
        };
        self.service_dir().join(name)
    }

    pub(crate) fn home(&self) -> &Path {
        &self.home
    }
}

fn current_uid() -> u32 {
    // SAFETY: getuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::getuid() }
}
