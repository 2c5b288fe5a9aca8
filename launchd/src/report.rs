//! What the service operations hand back: the [`Report`] of an install or uninstall (files
//! written and removed, commands run and skipped with the reason), a [`Status`] per service,
//! and where each service's logs are. Each has a `Display` the CLI can print as is.

use std::fmt;
use std::path::PathBuf;

use crate::host::CommandOutput;
use crate::service::Service;

/// A command that was run, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RanCommand {
    /// Program and arguments.
    pub command: Vec<String>,
    /// What it printed and how it exited.
    pub output: CommandOutput,
    /// Whether a failure was expected and ignored (e.g. unloading an agent that was not
    /// loaded); such failures do not fail the operation.
    pub failure_tolerated: bool,
}

/// A command that was not run, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedCommand {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Why it was skipped, in words a user can act on.
    pub reason: String,
}

/// Everything an install or uninstall did, in order within each list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Folders created.
    pub created_dirs: Vec<PathBuf>,
    /// Service files created or replaced.
    pub written: Vec<PathBuf>,
    /// Service files that already had the right content.
    pub unchanged: Vec<PathBuf>,
    /// Files removed.
    pub removed: Vec<PathBuf>,
    /// Commands run.
    pub ran: Vec<RanCommand>,
    /// Commands not run.
    pub skipped: Vec<SkippedCommand>,
    /// Anything else the user should know (how to start by hand, lingering, ...).
    pub notes: Vec<String>,
}

impl Report {
    /// The reason the service-manager steps were skipped, if they were.
    pub fn skip_reason(&self) -> Option<&str> {
        self.skipped.first().map(|s| s.reason.as_str())
    }

    /// Whether `program` was run with exactly `args`.
    pub fn ran_command(&self, command: &[&str]) -> bool {
        self.ran.iter().any(|r| r.command.iter().map(String::as_str).eq(command.iter().copied()))
    }
}

/// A command line as a user would type it in a POSIX shell.
pub(crate) fn shell_words(command: &[String]) -> String {
    let quoted: Vec<String> = command
        .iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=:@+,".contains(c)) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect();
    quoted.join(" ")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.created_dirs {
            writeln!(f, "created {}", d.display())?;
        }
        for p in &self.written {
            writeln!(f, "wrote {}", p.display())?;
        }
        for p in &self.unchanged {
            writeln!(f, "unchanged {}", p.display())?;
        }
        for p in &self.removed {
            writeln!(f, "removed {}", p.display())?;
        }
        for r in &self.ran {
            let how = if r.output.success() {
                "ok".to_owned()
            } else if r.failure_tolerated {
                format!("{}; ignored", r.output.summary())
            } else {
                r.output.summary()
            };
            writeln!(f, "ran `{}` ({how})", shell_words(&r.command))?;
        }
        for s in &self.skipped {
            writeln!(f, "skipped `{}`: {}", shell_words(&s.command), s.reason)?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

/// Whether a service is running, as far as the service manager says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Loaded and running.
    Running {
        /// Process id, when the service manager reports one.
        pid: Option<u32>,
    },
    /// Loaded but not running (exited cleanly, crashed and waiting to restart, failed).
    Stopped {
        /// The service manager's own words, e.g. `not running, last exit code 1`.
        detail: String,
    },
    /// Not known to the service manager.
    NotLoaded,
    /// The service manager could not be asked.
    Unknown {
        /// Why not.
        reason: String,
    },
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunState::Running { pid: Some(pid) } => write!(f, "running (pid {pid})"),
            RunState::Running { pid: None } => f.write_str("running"),
            RunState::Stopped { detail } => write!(f, "loaded, not running: {detail}"),
            RunState::NotLoaded => f.write_str("not loaded"),
            RunState::Unknown { reason } => write!(f, "unknown: {reason}"),
        }
    }
}

/// One service's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Which service.
    pub service: Service,
    /// Where its agent or unit file lives (or would).
    pub file: PathBuf,
    /// Whether that file exists.
    pub installed: bool,
    /// What the service manager says.
    pub state: RunState,
}

/// The status of every service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Daemon first, then gateway.
    pub services: Vec<ServiceStatus>,
}

impl Status {
    /// The entry for `service`.
    pub fn get(&self, service: Service) -> Option<&ServiceStatus> {
        self.services.iter().find(|s| s.service == service)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.services {
            let installed = if s.installed { "installed" } else { "not installed" };
            writeln!(f, "{}: {installed} ({}), {}", s.service, s.file.display(), s.state)?;
        }
        Ok(())
    }
}

/// Where one service's logs can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogLocation {
    /// A file the service appends to (macOS).
    File(PathBuf),
    /// A command that prints them (Linux: the journal). Add `-f` to follow.
    Command(Vec<String>),
}

/// Where a service's logs are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSource {
    /// Which service.
    pub service: Service,
    /// Where.
    pub location: LogLocation,
}

impl fmt::Display for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            LogLocation::File(p) => write!(f, "{}: {}", self.service, p.display()),
            LogLocation::Command(c) => write!(f, "{}: {}", self.service, shell_words(c)),
        }
    }
}
