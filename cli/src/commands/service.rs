//! `zeta service install|uninstall|status|logs`: the `zeta_launchd` operations for the
//! installation this `zeta` belongs to, with their reports printed as they are.

use std::path::{Path, PathBuf};
use std::process::Command;

use zeta_launchd::{Host, InstallOptions, LogFormat, LogLocation, Service, Settings};

use crate::args::{InstallArgs, LogFormatArg, LogsArgs, ServiceCommand};
use crate::error::CliError;

/// Runs one `zeta service` subcommand. `socket` and `config` are the global flags: given
/// explicitly, install pins them in the services' command lines.
pub fn service(cmd: &ServiceCommand, socket: Option<&Path>, config: Option<&Path>) -> Result<(), CliError> {
    let host = Host::from_env().map_err(launchd_err)?;
    match cmd {
        ServiceCommand::Install(args) => install(host, args, socket, config),
        ServiceCommand::Uninstall => {
            let report = zeta_launchd::uninstall(&host).map_err(launchd_err)?;
            out!("{report}")?;
            Ok(())
        }
        ServiceCommand::Status => {
            let status = zeta_launchd::status(&host).map_err(launchd_err)?;
            out!("{status}")?;
            Ok(())
        }
        ServiceCommand::Logs(args) => logs(&host, args),
    }
}

fn install(mut host: Host, args: &InstallArgs, socket: Option<&Path>, config: Option<&Path>) -> Result<(), CliError> {
    let mut settings = match &args.prefix {
        Some(p) => Settings::new(absolute(p)?),
        None => Settings::for_current_exe().map_err(launchd_err)?,
    };
    settings.socket = socket.map(absolute).transpose()?;
    settings.config = config.map(absolute).transpose()?;
    settings.listen = args.listen.clone();
    settings.log_format = match args.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    settings.rust_log = args.rust_log.clone();
    // The user's own Hugging Face cache, where set: the service would download again otherwise.
    for key in ["HF_HOME", "HF_HUB_CACHE"] {
        if let Some(v) = std::env::var_os(key).filter(|v| Path::new(v).is_absolute())
            && let Some(v) = v.to_str()
        {
            settings.hf_env.push((key.to_owned(), v.to_owned()));
        }
    }
    // The service's daemon reads the pinned config, else the default one (not this shell's
    // ZETA_MLX_CONFIG): its drain time sets how long the service manager waits before a kill.
    let daemon_config = settings.config.clone().or_else(zeta_proto::socket::default_config_path);
    if let Some(drain) = daemon_config.as_deref().and_then(zeta_proto::socket::drain_timeout_from_config) {
        settings.exit_timeout_secs = drain + zeta_launchd::EXIT_MARGIN_SECS;
    }
    if args.no_start {
        host.runner = None;
    }
    let beyond = !zeta_proto::edge::loopback_name(&zeta_proto::edge::host_name(&settings.listen));
    let report = zeta_launchd::install(&InstallOptions { settings, host }).map_err(launchd_err)?;
    out!("{report}")?;
    if beyond {
        eprintln!(
            "zeta: note: the gateway listens on {} with no API key: anyone who reaches the port can use it",
            args.listen
        );
    }
    Ok(())
}

/// Says where the logs are and, unless only that was asked, shows their latest lines (and
/// follows them with `--follow`) through `tail` or `journalctl`.
fn logs(host: &Host, args: &LogsArgs) -> Result<(), CliError> {
    let wanted = |s: Service| match (args.daemon, args.gateway) {
        (true, _) => s == Service::Daemon,
        (_, true) => s == Service::Gateway,
        _ => true,
    };
    let sources: Vec<_> = zeta_launchd::logs(host).into_iter().filter(|l| wanted(l.service)).collect();
    for s in &sources {
        outln!("{s}")?;
    }
    if args.r#where {
        return Ok(());
    }
    let mut files = Vec::new();
    let mut units = Vec::new();
    for s in &sources {
        match &s.location {
            LogLocation::File(p) if p.is_file() => files.push(p.clone()),
            LogLocation::File(p) => {
                outln!("{}: no log yet at {} (the service has not started)", s.service, p.display())?;
            }
            LogLocation::Command(c) => units.push(c.clone()),
        }
    }
    let lines = args.lines.to_string();
    if !files.is_empty() {
        let mut tail = Command::new("tail");
        tail.args(["-n", &lines]);
        if args.follow {
            tail.arg("-F");
        }
        run_viewer(tail.args(&files))?;
    }
    if !units.is_empty() {
        // One journalctl for both units interleaves their lines by time, as they happened.
        let mut journal = Command::new("journalctl");
        journal.args(["--user", "--no-pager", "-n", &lines]);
        for c in &units {
            if let Some(unit) = c.iter().skip_while(|w| *w != "-u").nth(1) {
                journal.args(["-u", unit]);
            }
        }
        if args.follow {
            journal.arg("-f");
        }
        run_viewer(&mut journal)?;
    }
    Ok(())
}

fn run_viewer(cmd: &mut Command) -> Result<(), CliError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd.status().map_err(|e| CliError::Other(format!("could not run {program}: {e}")))?;
    if status.success() { Ok(()) } else { Err(CliError::Other(format!("{program} failed ({status})"))) }
}

fn absolute(p: &Path) -> Result<PathBuf, CliError> {
    std::path::absolute(p).map_err(|e| CliError::Other(format!("{}: {e}", p.display())))
}

fn launchd_err(e: zeta_launchd::Error) -> CliError {
    CliError::Other(e.to_string())
}
