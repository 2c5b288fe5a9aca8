//! The operations behind `zeta service install|uninstall|status|logs`: write or remove the
//! service files for this installation, and drive launchctl (macOS) or `systemctl --user`
//! (Linux) when a service manager is there to drive.
//!
//! Every step is safe to repeat: install overwrites the files and reloads/restarts the
//! services (so an upgraded binary is picked up), uninstall tolerates services that are
//! already gone. Uninstall touches the agent/unit files only, never models, config or caches.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use crate::host::{CommandOutput, CommandRunner, Host, Platform};
use crate::launchd::{self, LaunchdJob};
use crate::report::{LogLocation, LogSource, RanCommand, Report, RunState, ServiceStatus, SkippedCommand, Status};
use crate::service::{self, Service, Settings};
use crate::{Error, systemd};

/// Everything [`install`] needs: what the services run, and where they are installed.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// Prefix, flags and environment of the services.
    pub settings: Settings,
    /// Platform, home folder and command runner.
    pub host: Host,
}

impl InstallOptions {
    /// Options for the real machine and the installation the running program belongs to.
    pub fn for_current_exe() -> Result<Self, Error> {
        Ok(InstallOptions { settings: Settings::for_current_exe()?, host: Host::from_env()? })
    }
}

/// How often `launchctl bootstrap` is tried before falling back to `launchctl load`: right
/// after a bootout, launchd can still be tearing the old instance down (the daemon may take
/// seconds to drain) and answers with a transient I/O error.
const BOOTSTRAP_ATTEMPTS: u32 = 3;
const BOOTSTRAP_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Writes both services' agents (macOS) or units (Linux) with this installation's absolute
/// paths, then loads and starts them, or says in the report why that step was skipped.
pub fn install(opts: &InstallOptions) -> Result<Report, Error> {
    opts.settings.validate()?;
    opts.host.validate()?;
    for service in Service::ALL {
        let bin = opts.settings.binary(service);
        if !is_executable(&bin) {
            return Err(Error::MissingBinary { path: bin });
        }
    }
    for service in Service::ALL {
        check_settings(&opts.settings, service, &opts.host.home)?;
    }
    let mut report = Report::default();
    if opts.host.uid == 0 {
        report.notes.push(
            "running as root: the services are installed for root's session; run without sudo to install them for your user"
                .to_owned(),
        );
    }
    match opts.host.platform {
        Platform::MacOs => install_macos(opts, &mut report)?,
        Platform::Linux => install_linux(opts, &mut report)?,
    }
    tracing::info!(
        written = report.written.len(),
        ran = report.ran.len(),
        skipped = report.skipped.len(),
        "service install done"
    );
    Ok(report)
}

/// Stops both services and removes their agents or units. Leaves everything else alone.
pub fn uninstall(host: &Host) -> Result<Report, Error> {
    host.validate()?;
    let mut report = Report::default();
    match host.platform {
        Platform::MacOs => uninstall_macos(host, &mut report)?,
        Platform::Linux => uninstall_linux(host, &mut report)?,
    }
    tracing::info!(
        removed = report.removed.len(),
        ran = report.ran.len(),
        skipped = report.skipped.len(),
        "service uninstall done"
    );
    Ok(report)
}

/// Whether each service is installed, loaded and running.
pub fn status(host: &Host) -> Result<Status, Error> {
    host.validate()?;
    let linux_manager = match host.platform {
        Platform::Linux => Some(probe_systemd(host).1),
        Platform::MacOs => None,
    };
    let services = Service::ALL
        .into_iter()
        .map(|service| {
            let file = host.service_file(service);
            let state = match (&linux_manager, host.runner.as_deref()) {
                (Some(Err(reason)), _) => RunState::Unknown { reason: reason.clone() },
                (Some(Ok(runner)), _) => systemd_state(*runner, service),
                (None, Some(runner)) => launchd_state(runner, host.uid, service),
                (None, None) => RunState::Unknown { reason: "running launchctl is turned off".to_owned() },
            };
            ServiceStatus { service, installed: file.is_file(), file, state }
        })
        .collect();
    Ok(Status { services })
}

/// Where each service's logs are: files under `~/Library/Logs/zeta-mlx/` on macOS, the
/// `journalctl` command on Linux.
pub fn logs(host: &Host) -> Vec<LogSource> {
    Service::ALL
        .into_iter()
        .map(|service| {
            let location = match host.platform {
                Platform::MacOs => LogLocation::File(service::macos_log_dir(host.home()).join(service.log_file_name())),
                Platform::Linux => LogLocation::Command(words(&["journalctl", "--user", "-u", service.binary_name()])),
            };
            LogSource { service, location }
        })
        .collect()
}

fn install_macos(opts: &InstallOptions, report: &mut Report) -> Result<(), Error> {
    let host = &opts.host;
    ensure_dir(&host.service_dir(), report)?;
    // launchd opens the log files but does not create their folder; without it the job
    // fails to spawn with nothing logged anywhere a user would look.
    ensure_dir(&service::macos_log_dir(host.home()), report)?;
    let mut plists = Vec::new();
    for service in Service::ALL {
        let xml = LaunchdJob::new(&opts.settings, host.home(), service).to_xml()?;
        let path = host.service_file(service);
        write_file(&path, &xml, report)?;
        plists.push((service, path));
    }
    let Some(runner) = &host.runner else {
        for (service, path) in &plists {
            report.skipped.push(SkippedCommand {
                command: bootstrap_command(host.uid, path),
                reason: format!("running launchctl is turned off; load {} by hand", service.label()),
            });
        }
        return Ok(());
    };
    for (service, path) in &plists {
        load_agent(runner.as_ref(), host.uid, *service, path, report)?;
    }
    Ok(())
}

/// (Re)loads one agent: unload whatever instance is loaded so the new file and binary take
/// effect, clear a `disable` left by an earlier `launchctl unload -w`, then bootstrap, and
/// fall back to the legacy `load -w` where bootstrap is refused (older macOS, or a session
/// without a GUI domain).
fn load_agent(
    runner: &dyn CommandRunner,
    uid: u32,
    service: Service,
    plist: &Path,
    report: &mut Report,
) -> Result<(), Error> {
    let target = format!("gui/{uid}/{}", service.label());
    run(runner, report, words(&["launchctl", "bootout", &target]), true)?;
    run(runner, report, words(&["launchctl", "enable", &target]), true)?;
    let mut last = CommandOutput::default();
    for attempt in 1..=BOOTSTRAP_ATTEMPTS {
        last = run(runner, report, bootstrap_command(uid, plist), true)?;
        if last.success() {
            return Ok(());
        }
        if attempt < BOOTSTRAP_ATTEMPTS {
            std::thread::sleep(BOOTSTRAP_RETRY_DELAY);
        }
    }
    tracing::warn!(label = service.label(), error = %last.summary(), "launchctl bootstrap failed; trying launchctl load");
    let legacy = run(runner, report, words(&["launchctl", "load", "-w", &service::display(plist)]), true)?;
    // `launchctl load` reports some failures on stderr with exit status 0.
    if legacy.success() && !legacy.stderr.to_lowercase().contains("failed") {
        return Ok(());
    }
    Err(Error::Command {
        command: format!("launchctl bootstrap gui/{uid} {}", plist.display()),
        detail: format!("{}; `launchctl load -w` also failed: {}", last.summary(), legacy.summary()),
    })
}

fn bootstrap_command(uid: u32, plist: &Path) -> Vec<String> {
    words(&["launchctl", "bootstrap", &format!("gui/{uid}"), &service::display(plist)])
}

fn uninstall_macos(host: &Host, report: &mut Report) -> Result<(), Error> {
    // Gateway first: it depends on the daemon, not the other way round.
    for service in Service::ALL.into_iter().rev() {
        let path = host.service_file(service);
        let target = format!("gui/{}/{}", host.uid, service.label());
        match &host.runner {
            Some(runner) => {
                let out = run(runner.as_ref(), report, words(&["launchctl", "bootout", &target]), true)?;
                if !out.success() && path.is_file() {
                    // Agents loaded with the legacy `load` may not answer to bootout.
                    run(runner.as_ref(), report, words(&["launchctl", "unload", &service::display(&path)]), true)?;
                }
            }
            None => report.skipped.push(SkippedCommand {
                command: words(&["launchctl", "bootout", &target]),
                reason: "running launchctl is turned off".to_owned(),
            }),
        }
        remove_file(&path, report)?;
    }
    Ok(())
}

fn install_linux(opts: &InstallOptions, report: &mut Report) -> Result<(), Error> {
    let host = &opts.host;
    ensure_dir(&host.service_dir(), report)?;
    for service in Service::ALL {
        let text = systemd::unit(&opts.settings, host.home(), service);
        write_file(&host.service_file(service), &text, report)?;
    }
    let units: Vec<String> = Service::ALL.iter().map(|s| s.unit_name()).collect();
    let mut steps = vec![words(&["systemctl", "--user", "daemon-reload"]), words(&["systemctl", "--user", "enable"])];
    steps[1].extend(units.iter().cloned());
    // restart, not `enable --now`: --now leaves an already-running service on the old
    // binary and unit, and re-running install is how users apply an upgrade.
    let mut restart = words(&["systemctl", "--user", "restart"]);
    restart.extend(units.iter().cloned());
    steps.push(restart);

    let (probe, manager) = probe_systemd(host);
    report.ran.extend(probe);
    match manager {
        Ok(runner) => {
            for step in steps {
                run(runner, report, step, false)?;
            }
            report
                .notes
                .push("to keep the services running while you are logged out, run `loginctl enable-linger`".to_owned());
        }
        Err(reason) => {
            tracing::warn!(%reason, "skipping the systemctl steps");
            for step in steps {
                report.skipped.push(SkippedCommand { command: step, reason: reason.clone() });
            }
            report.notes.push(format!(
                "the units are in place and start with your next systemd user session (or run `systemctl --user enable --now {}` there); to run the services now without systemd: `{}` and `{}`",
                units.join(" "),
                opts.settings.shell_command(Service::Daemon),
                opts.settings.shell_command(Service::Gateway),
            ));
        }
    }
    Ok(())
}

fn uninstall_linux(host: &Host, report: &mut Report) -> Result<(), Error> {
    let units: Vec<String> = Service::ALL.iter().rev().map(|s| s.unit_name()).collect();
    let mut disable = words(&["systemctl", "--user", "disable", "--now"]);
    disable.extend(units.iter().cloned());
    let (probe, manager) = probe_systemd(host);
    report.ran.extend(probe);
    match &manager {
        // Tolerated: units that were never loaded make disable fail, and that is the goal.
        Ok(runner) => {
            run(*runner, report, disable, true)?;
        }
        Err(reason) => report.skipped.push(SkippedCommand { command: disable, reason: reason.clone() }),
    }
    let dir = host.service_dir();
    for service in Service::ALL.into_iter().rev() {
        // `enable` made these links; without a manager to `disable`, they would dangle.
        let link = dir.join("default.target.wants").join(service.unit_name());
        if fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            remove_file(&link, report)?;
        }
        remove_file(&host.service_file(service), report)?;
    }
    let mut reset = words(&["systemctl", "--user", "reset-failed"]);
    reset.extend(units.iter().cloned());
    let after = [words(&["systemctl", "--user", "daemon-reload"]), reset];
    match &manager {
        Ok(runner) => {
            for step in after {
                // reset-failed fails for units systemd no longer knows about: fine.
                let tolerate = step.iter().any(|w| w == "reset-failed");
                run(*runner, report, step, tolerate)?;
            }
        }
        Err(reason) => {
            for step in after {
                report.skipped.push(SkippedCommand { command: step, reason: reason.clone() });
            }
        }
    }
    Ok(())
}

/// Whether a systemd user manager can be driven, and the runner to drive it with; otherwise
/// why not, in words that tell the user what is going on. The probe command, when run, is
/// returned for the report.
fn probe_systemd(host: &Host) -> (Option<RanCommand>, Result<&dyn CommandRunner, String>) {
    let Some(runner) = host.runner.as_deref() else {
        return (None, Err("running systemctl is turned off".to_owned()));
    };
    if host.xdg_runtime_dir.is_none() {
        return (
            None,
            Err("no systemd user manager: XDG_RUNTIME_DIR is not set (a container, a `su`/`sudo` shell, or a login without systemd)".to_owned()),
        );
    }
    let command = words(&["systemctl", "--user", "is-system-running"]);
    let output = match runner.run(&command[0], &command[1..]) {
        Ok(o) => o,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return (None, Err("no systemd user manager: systemctl is not installed".to_owned()));
        }
        Err(e) => return (None, Err(format!("no systemd user manager: could not run systemctl: {e}"))),
    };
    // is-system-running exits non-zero for `degraded` (some unrelated unit failed), which
    // still means a manager is there to take our units.
    let state = output.stdout.lines().next().unwrap_or("").trim().to_owned();
    let usable = matches!(state.as_str(), "running" | "degraded" | "starting" | "initializing" | "maintenance");
    let ran = RanCommand { command, output: output.clone(), failure_tolerated: true };
    if usable {
        (Some(ran), Ok(runner))
    } else {
        let said = if state.is_empty() { output.summary() } else { state };
        (Some(ran), Err(format!("no systemd user manager: `systemctl --user is-system-running` says {said}")))
    }
}

fn systemd_state(runner: &dyn CommandRunner, service: Service) -> RunState {
    let args = words(&["--user", "show", "--property=LoadState,ActiveState,SubState,MainPID", &service.unit_name()]);
    match runner.run("systemctl", &args) {
        Ok(out) if out.success() => systemd::parse_systemctl_show(&out.stdout),
        Ok(out) => RunState::Unknown { reason: format!("systemctl show failed: {}", out.summary()) },
        Err(e) => RunState::Unknown { reason: format!("could not run systemctl: {e}") },
    }
}

fn launchd_state(runner: &dyn CommandRunner, uid: u32, service: Service) -> RunState {
    let args = words(&["print", &format!("gui/{uid}/{}", service.label())]);
    match runner.run("launchctl", &args) {
        Ok(out) if out.success() => launchd::parse_launchctl_print(&out.stdout),
        // launchctl print fails (113, "Could not find service") for a label it does not know.
        Ok(out) if out.code.is_some() => RunState::NotLoaded,
        Ok(out) => RunState::Unknown { reason: format!("launchctl print failed: {}", out.summary()) },
        Err(e) => RunState::Unknown { reason: format!("could not run launchctl: {e}") },
    }
}

/// Runs one command and records it. A failure is an error unless `tolerate` says it is
/// expected.
fn run(
    runner: &dyn CommandRunner,
    report: &mut Report,
    command: Vec<String>,
    tolerate: bool,
) -> Result<CommandOutput, Error> {
    let output =
        runner.run(&command[0], &command[1..]).map_err(|e| Error::Spawn { program: command[0].clone(), source: e })?;
    if !output.success() {
        tracing::debug!(command = %shell_join(&command), error = %output.summary(), tolerate, "command failed");
    }
    report.ran.push(RanCommand { command: command.clone(), output: output.clone(), failure_tolerated: tolerate });
    if !output.success() && !tolerate {
        return Err(Error::Command { command: shell_join(&command), detail: output.summary() });
    }
    Ok(output)
}

fn ensure_dir(dir: &Path, report: &mut Report) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.to_path_buf(), source: e })?;
    report.created_dirs.push(dir.to_path_buf());
    Ok(())
}

/// Writes `content` to `path` through a temporary file and a rename, so launchd or systemd
/// never reads half a file, with mode 0644: launchd refuses agents that group or others can
/// write, which a permissive umask would otherwise produce.
fn write_file(path: &Path, content: &str, report: &mut Report) -> Result<(), Error> {
    if fs::read(path).is_ok_and(|old| old == content.as_bytes()) {
        // Rewrite the mode anyway: an agent with bad permissions is the one thing launchd
        // silently refuses, and it costs nothing to fix here.
        set_mode(path)?;
        report.unchanged.push(path.to_path_buf());
        return Ok(());
    }
    let io_err = |e| Error::Io { path: path.to_path_buf(), source: e };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)?;
    report.written.push(path.to_path_buf());
    Ok(())
}

fn set_mode(path: &Path) -> Result<(), Error> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::Io { path: path.to_path_buf(), source: e })
}

fn remove_file(path: &Path, report: &mut Report) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => {
            report.removed.push(path.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io { path: path.to_path_buf(), source: e }),
    }
}

/// How long a service's `--check` may take; it reads a config file and resolves an address.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the service's command line with `--check`, so a config or flag it would refuse stops the
/// install instead of a service that exits at every start (and, on macOS, is restarted every 10
/// s). It runs with the service's environment and without this shell's `ZETA_*` variables,
/// which the service will not have either.
fn check_settings(settings: &Settings, service: Service, home: &Path) -> Result<(), Error> {
    let argv = settings.program_arguments(service);
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).arg("--check");
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("ZETA_")) {
            cmd.env_remove(key);
        }
    }
    cmd.envs(settings.environment(service, home));
    let command = shell_join(&[argv.as_slice(), &["--check".to_owned()]].concat());
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn { program: argv[0].clone(), source })?;
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < CHECK_TIMEOUT => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Refused { command, detail: format!("no answer in {CHECK_TIMEOUT:?}") });
            }
            Err(source) => return Err(Error::Spawn { program: argv[0].clone(), source }),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut detail = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = io::Read::read_to_string(&mut err, &mut detail);
    }
    let detail = match detail.trim() {
        "" => format!("it exited with {status}"),
        said => said.to_owned(),
    };
    Err(Error::Refused { command, detail })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn words(ws: &[&str]) -> Vec<String> {
    ws.iter().map(|w| (*w).to_owned()).collect()
}

fn shell_join(command: &[String]) -> String {
    crate::report::shell_words(command)
}
