//! The typed launchd job (`launchd.plist(5)`) for each service, its XML rendering through the
//! `plist` crate, and the parsing of `launchctl print` output for `status`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::service::{self, OPEN_FILES_LIMIT, RESTART_DELAY_SECS, Service, Settings};
use crate::{Error, RunState};

/// A launchd job definition: the keys of `launchd.plist(5)` that zeta-mlx uses, in the order
/// they are written. Field names serialize to launchd's PascalCase keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LaunchdJob {
    /// Unique job name in the user's launchd domain.
    pub label: String,
    /// The command line, binary first, with absolute paths only.
    pub program_arguments: Vec<String>,
    /// Start the job as soon as it is loaded (at login for agents).
    pub run_at_load: bool,
    /// When launchd restarts the job.
    pub keep_alive: KeepAlive,
    /// Minimum seconds between two launches.
    pub throttle_interval: u64,
    /// Seconds between SIGTERM and SIGKILL when the job is stopped.
    pub exit_time_out: u64,
    /// Which resource limits macOS applies.
    pub process_type: ProcessType,
    /// Folder the job starts in.
    pub working_directory: String,
    /// Environment of the job (launchd provides almost none of the user's shell).
    pub environment_variables: BTreeMap<String, String>,
    /// File that receives standard output.
    pub standard_out_path: String,
    /// File that receives standard error.
    pub standard_error_path: String,
    /// Soft resource limits (`setrlimit`).
    pub soft_resource_limits: ResourceLimits,
    /// Hard resource limits (`setrlimit`).
    pub hard_resource_limits: ResourceLimits,
}

/// The `KeepAlive` dictionary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeepAlive {
    /// `false`: restart the job whenever it exits unsuccessfully (non-zero status or a
    /// signal), but leave it stopped after a clean exit, so `zeta-mlxd` shutting down on
    /// purpose is not resurrected.
    pub successful_exit: bool,
}

/// The `SoftResourceLimits` / `HardResourceLimits` dictionaries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceLimits {
    /// `RLIMIT_NOFILE`.
    pub number_of_files: u64,
}

/// launchd's `ProcessType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessType {
    /// Throttled CPU and I/O; for work nobody waits on.
    Background,
    /// Light limits; what launchd applies when the key is absent.
    Standard,
    /// Limits chosen by XPC activity; needs an XPC service.
    Adaptive,
    /// No limits, like a foreground app.
    Interactive,
}

impl LaunchdJob {
    /// The agent for `service` in an installation described by `settings`, for the user whose
    /// home folder is `home`.
    ///
    /// Both services are `Interactive`: someone is waiting on every token the daemon produces
    /// and the gateway forwards, and the light CPU and I/O throttling of `Standard` (launchd's
    /// default) shows up directly as latency. Both use no CPU while idle, so going unthrottled
    /// costs nothing when nobody is asking.
    pub fn new(settings: &Settings, home: &Path, service: Service) -> Self {
        let log = service::display(&service::macos_log_dir(home).join(service.log_file_name()));
        let limits = ResourceLimits { number_of_files: OPEN_FILES_LIMIT };
        LaunchdJob {
            label: service.label().to_owned(),
            program_arguments: settings.program_arguments(service),
            run_at_load: true,
            keep_alive: KeepAlive { successful_exit: false },
            throttle_interval: RESTART_DELAY_SECS,
            exit_time_out: settings.exit_timeout_secs,
            process_type: ProcessType::Interactive,
            working_directory: service::display(home),
            environment_variables: settings.environment(service, home),
            // One file for both streams: the daemon logs through tracing on stderr, and a
            // panic or an MLX abort message must land next to the lines before it.
            standard_out_path: log.clone(),
            standard_error_path: log,
            soft_resource_limits: limits.clone(),
            hard_resource_limits: limits,
        }
    }

    /// The committed example: an install under `/usr/local` for the placeholder user
    /// `/Users/you`, with default settings.
    pub fn example(service: Service) -> Self {
        LaunchdJob::new(&Settings::new(service::EXAMPLE_PREFIX), Path::new(service::EXAMPLE_HOME), service)
    }

    /// The job as an XML property list, the form launchd reads and people edit, ending in a
    /// newline.
    pub fn to_xml(&self) -> Result<String, Error> {
        let mut out = Vec::new();
        plist::to_writer_xml(&mut out, self).map_err(|e| Error::Plist(e.to_string()))?;
        out.push(b'\n');
        String::from_utf8(out).map_err(|e| Error::Plist(e.to_string()))
    }

    /// Parses a job back from a property list (XML or binary).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        plist::from_bytes(bytes).map_err(|e| Error::Plist(e.to_string()))
    }
}

/// Reads the state of a job from `launchctl print gui/<uid>/<label>` output.
///
/// Only the top-level `key = value` lines of the service block are read (one tab deep):
/// nested blocks such as `environment` or `event triggers` have keys of the same names that
/// describe something else.
pub fn parse_launchctl_print(output: &str) -> RunState {
    let mut state = None;
    let mut pid = None;
    let mut last_exit = None;
    for line in output.lines() {
        let Some(rest) = line.strip_prefix('\t') else { continue };
        if rest.starts_with(char::is_whitespace) {
            continue;
        }
        let Some((key, value)) = rest.split_once(" = ") else { continue };
        match key.trim() {
            "state" => state = Some(value.trim().to_owned()),
            "pid" => pid = value.trim().parse::<u32>().ok(),
            "last exit code" => last_exit = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    match (state.as_deref(), pid) {
        (Some("running"), pid) | (_, pid @ Some(_)) => RunState::Running { pid },
        (Some(other), None) => {
            let detail = match last_exit {
                Some(code) => format!("{other}, last exit code {code}"),
                None => other.to_owned(),
            };
            RunState::Stopped { detail }
        }
        (None, None) => RunState::Unknown { reason: "launchctl print showed no state".to_owned() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_output_of_a_running_job() {
        let out = "gui/501/com.zeta.mlx = {\n\tactive count = 1\n\tpath = /Users/you/Library/LaunchAgents/com.zeta.mlx.plist\n\tstate = running\n\n\tprogram = /usr/local/bin/zeta-mlxd\n\tenvironment = {\n\t\tstate = bogus\n\t\tpid = 7\n\t}\n\tpid = 4242\n\tlast exit code = (never exited)\n}\n";
        assert_eq!(parse_launchctl_print(out), RunState::Running { pid: Some(4242) });
    }

    #[test]
    fn print_output_of_a_crashed_job() {
        let out = "gui/501/com.zeta.mlx = {\n\tstate = not running\n\tlast exit code = 1\n\tenvironment = {\n\t\tpid = 9\n\t}\n}\n";
        assert_eq!(
            parse_launchctl_print(out),
            RunState::Stopped { detail: "not running, last exit code 1".to_owned() }
        );
    }

    #[test]
    fn job_round_trips_through_xml() {
        let job = LaunchdJob::example(Service::Gateway);
        let xml = job.to_xml().unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist"), "{xml}");
        assert!(xml.ends_with("</plist>\n"), "{xml}");
        assert_eq!(LaunchdJob::from_bytes(xml.as_bytes()).unwrap(), job);
    }
}
