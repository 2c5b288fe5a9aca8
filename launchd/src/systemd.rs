//! systemd user units for Linux (`systemd.service(5)`), written as text with the quoting
//! systemd needs, and the parsing of `systemctl --user show` output for `status`.

use std::fmt::Write as _;
use std::path::Path;

use crate::RunState;
use crate::service::{self, OPEN_FILES_LIMIT, RESTART_DELAY_SECS, Service, Settings};

/// The user unit for `service` in an installation described by `settings`, for the user whose
/// home folder is `home`. Output goes to the journal (`journalctl --user -u zeta-mlxd`), where
/// Linux users look, so the unit names no log file.
pub fn unit(settings: &Settings, home: &Path, service: Service) -> String {
    let mut u = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(u, "# Written by `zeta service install`; running it again overwrites this file.");
    let _ = writeln!(u, "[Unit]");
    let _ = writeln!(u, "Description={}", escape_specifiers(service.description()));
    if service == Service::Gateway {
        // Wants, not Requires: the gateway is stateless and answers 503 while the daemon is
        // down, so a daemon restart should not take the gateway with it.
        let daemon = Service::Daemon.unit_name();
        let _ = writeln!(u, "Wants={daemon}");
        let _ = writeln!(u, "After={daemon}");
    }
    let _ = writeln!(u);
    let _ = writeln!(u, "[Service]");
    // `exec`, not `simple`: a missing or non-executable binary fails the start job instead of
    // being reported as started.
    let _ = writeln!(u, "Type=exec");
    let args: Vec<String> = settings.program_arguments(service).iter().map(|a| quote_exec_arg(a)).collect();
    let _ = writeln!(u, "ExecStart={}", args.join(" "));
    let _ = writeln!(u, "WorkingDirectory={}", escape_specifiers(&service::display(home)));
    let env: Vec<String> =
        settings.environment(service, home).iter().map(|(k, v)| quote_always(&format!("{k}={v}"))).collect();
    let _ = writeln!(u, "Environment={}", env.join(" "));
    let _ = writeln!(u, "Restart=on-failure");
    let _ = writeln!(u, "RestartSec={RESTART_DELAY_SECS}");
    // The daemon drains in-flight requests on SIGTERM (the signal launchd sends too, so both
    // platforms stop it the same way); the timeout outlasts its drain deadline.
    let _ = writeln!(u, "KillSignal=SIGTERM");
    let _ = writeln!(u, "TimeoutStopSec={}", settings.exit_timeout_secs);
    let _ = writeln!(u, "LimitNOFILE={OPEN_FILES_LIMIT}");
    let _ = writeln!(u);
    let _ = writeln!(u, "[Install]");
    let _ = writeln!(u, "WantedBy=default.target");
    u
}

/// `%` starts a specifier in almost every unit setting.
fn escape_specifiers(s: &str) -> String {
    s.replace('%', "%%")
}

/// One `ExecStart=` word. Plain words stay bare so the unit reads naturally; anything systemd
/// would split, unquote, expand or treat as a separator is double-quoted.
fn quote_exec_arg(arg: &str) -> String {
    let needs_quotes =
        arg.is_empty() || arg == ";" || arg.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'));
    // `$` expands environment variables in ExecStart, quoted or not.
    let arg = escape_specifiers(arg).replace('$', "$$");
    if needs_quotes { quote_escaped(&arg) } else { arg }
}

/// A double-quoted value for settings that take quoted words (`Environment=`).
fn quote_always(s: &str) -> String {
    quote_escaped(&escape_specifiers(s))
}

/// Double-quotes a value whose specifiers are already escaped.
fn quote_escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads the state of a unit from `systemctl --user show --property=LoadState,ActiveState,SubState,MainPID <unit>`.
pub fn parse_systemctl_show(output: &str) -> RunState {
    let get =
        |key: &str| output.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).map(str::trim);
    let load = get("LoadState").unwrap_or("");
    let active = get("ActiveState").unwrap_or("");
    let sub = get("SubState").unwrap_or("");
    let pid = get("MainPID").and_then(|p| p.parse::<u32>().ok()).filter(|&p| p != 0);
    match (load, active) {
        ("not-found", _) => RunState::NotLoaded,
        ("", "") => RunState::Unknown { reason: format!("systemctl show printed no state: {}", output.trim()) },
        (_, "active" | "reloading") => RunState::Running { pid },
        (_, active) => {
            RunState::Stopped { detail: if sub.is_empty() { active.to_owned() } else { format!("{active} ({sub})") } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_words_are_quoted_only_when_needed() {
        assert_eq!(quote_exec_arg("/usr/local/bin/zeta-mlxd"), "/usr/local/bin/zeta-mlxd");
        assert_eq!(quote_exec_arg("/Users/a b/c.toml"), "\"/Users/a b/c.toml\"");
        assert_eq!(quote_exec_arg("100%$x"), "100%%$$x");
        assert_eq!(quote_exec_arg("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(quote_exec_arg(""), "\"\"");
        assert_eq!(quote_exec_arg("a %b"), "\"a %%b\"");
        assert_eq!(quote_always("K=50% off"), "\"K=50%% off\"");
    }

    #[test]
    fn show_output() {
        let running = "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=812\n";
        assert_eq!(parse_systemctl_show(running), RunState::Running { pid: Some(812) });
        let failed = "LoadState=loaded\nActiveState=failed\nSubState=failed\nMainPID=0\n";
        assert_eq!(parse_systemctl_show(failed), RunState::Stopped { detail: "failed (failed)".to_owned() });
        let missing = "LoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0\n";
        assert_eq!(parse_systemctl_show(missing), RunState::NotLoaded);
    }
}
