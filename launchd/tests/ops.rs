//! install / uninstall / status / logs under a temporary HOME, with a recording command runner
//! in place of launchctl and systemctl, so nothing on the real system is touched.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::{FakeRunner, failed, ok};
use zeta_launchd::{
    CommandOutput, Error, InstallOptions, LaunchdJob, LogLocation, Platform, RunState, Service, Settings, install,
    logs, status, systemd_unit, uninstall,
};

struct Fixture {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    prefix: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = common::fake_prefix(tmp.path());
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    Fixture { home, prefix, _tmp: tmp }
}

fn options(f: &Fixture, platform: Platform, runner: Option<std::sync::Arc<FakeRunner>>) -> InstallOptions {
    InstallOptions { settings: Settings::new(&f.prefix), host: common::host(platform, &f.home, runner) }
}

fn units_dir(home: &Path) -> PathBuf {
    home.join(".config/systemd/user")
}

#[test]
fn linux_install_without_user_systemd_writes_units_and_says_why_it_skipped() {
    let f = fixture();
    let runner = FakeRunner::healthy();
    // As on this build machine: no XDG_RUNTIME_DIR, so no user manager to talk to.
    let opts = options(&f, Platform::Linux, Some(runner.clone()));
    let report = install(&opts).unwrap();
    eprintln!("{report}");

    for service in Service::ALL {
        let path = units_dir(&f.home).join(service.unit_name());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), systemd_unit(&opts.settings, &f.home, service));
        assert!(report.written.contains(&path));
    }
    assert!(runner.calls().is_empty(), "ran {:?}", runner.calls());
    let reason = report.skip_reason().expect("a reason for skipping systemctl");
    assert!(reason.contains("XDG_RUNTIME_DIR"), "{reason}");
    let skipped: Vec<String> = report.skipped.iter().map(|s| s.command.join(" ")).collect();
    assert_eq!(
        skipped,
        [
            "systemctl --user daemon-reload",
            "systemctl --user enable zeta-mlxd.service zeta-gateway.service",
            "systemctl --user restart zeta-mlxd.service zeta-gateway.service",
        ]
    );
    assert!(report.to_string().contains("skipped `systemctl --user daemon-reload`: no systemd user manager"));
}

#[test]
fn linux_install_with_an_offline_manager_skips_with_its_answer() {
    let f = fixture();
    let runner = FakeRunner::new(|cmd| {
        if cmd.iter().any(|a| a == "is-system-running") {
            Ok(CommandOutput { code: Some(1), stdout: "offline\n".into(), stderr: String::new() })
        } else {
            panic!("ran {cmd:?} although the manager is offline")
        }
    });
    let mut opts = options(&f, Platform::Linux, Some(runner.clone()));
    opts.host.xdg_runtime_dir = Some(f.home.join("run"));
    let report = install(&opts).unwrap();
    eprintln!("{report}");
    assert_eq!(runner.calls(), ["systemctl --user is-system-running"]);
    assert!(report.skip_reason().unwrap().contains("offline"), "{report}");
    assert_eq!(report.skipped.len(), 3);
}

#[test]
fn linux_install_with_user_systemd_reloads_enables_and_restarts_every_time() {
    let f = fixture();
    let runner = FakeRunner::healthy();
    let mut opts = options(&f, Platform::Linux, Some(runner.clone()));
    opts.host.xdg_runtime_dir = Some(f.home.join("run"));
    let expected = [
        "systemctl --user is-system-running",
        "systemctl --user daemon-reload",
        "systemctl --user enable zeta-mlxd.service zeta-gateway.service",
        "systemctl --user restart zeta-mlxd.service zeta-gateway.service",
    ];

    let first = install(&opts).unwrap();
    assert_eq!(runner.calls(), expected);
    assert_eq!(first.written.len(), 2);
    assert!(first.skipped.is_empty(), "{first}");

    // Again: same files, left as they are, and the services restarted onto whatever binary
    // is installed now.
    runner.clear();
    let second = install(&opts).unwrap();
    assert_eq!(runner.calls(), expected);
    assert!(second.written.is_empty(), "{second}");
    assert_eq!(second.unchanged.len(), 2);
}

#[test]
fn linux_install_fails_when_a_required_systemctl_step_fails() {
    let f = fixture();
    let runner = FakeRunner::new(|cmd| {
        Ok(if cmd.iter().any(|a| a == "is-system-running") {
            ok("degraded\n")
        } else if cmd.iter().any(|a| a == "enable") {
            failed(1, "Failed to enable unit: Unit file zeta-mlxd.service does not exist.")
        } else {
            ok("")
        })
    });
    let mut opts = options(&f, Platform::Linux, Some(runner.clone()));
    opts.host.xdg_runtime_dir = Some(f.home.join("run"));
    let err = install(&opts).unwrap_err();
    assert!(matches!(err, Error::Command { .. }), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(!runner.calls().iter().any(|c| c.contains("restart")), "{:?}", runner.calls());
}

#[test]
fn linux_units_follow_xdg_config_home_when_absolute() {
    let f = fixture();
    let mut opts = options(&f, Platform::Linux, None);
    opts.host.xdg_config_home = Some(f.home.join("xdg"));
    install(&opts).unwrap();
    assert!(f.home.join("xdg/systemd/user/zeta-mlxd.service").is_file());
    assert!(!units_dir(&f.home).exists());

    // A relative XDG_CONFIG_HOME is invalid per the XDG spec and ignored.
    opts.host.xdg_config_home = Some(PathBuf::from("relative/xdg"));
    install(&opts).unwrap();
    assert!(units_dir(&f.home).join("zeta-gateway.service").is_file());
}

#[test]
fn linux_uninstall_removes_the_units_and_nothing_else() {
    let f = fixture();
    let runner = FakeRunner::healthy();
    let mut opts = options(&f, Platform::Linux, Some(runner.clone()));
    opts.host.xdg_runtime_dir = Some(f.home.join("run"));
    install(&opts).unwrap();

    let units = units_dir(&f.home);
    let wants = units.join("default.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    // What `systemctl --user enable` would have left, and things that belong to others.
    std::os::unix::fs::symlink(units.join("zeta-mlxd.service"), wants.join("zeta-mlxd.service")).unwrap();
    std::fs::write(units.join("other.service"), "[Service]\nExecStart=/bin/true\n").unwrap();
    std::os::unix::fs::symlink(units.join("other.service"), wants.join("other.service")).unwrap();
    let keep = [
        f.home.join(".config/zeta-mlx/config.toml"),
        f.home.join(".cache/huggingface/hub/models--x/blob"),
        f.home.join(".zeta-mlx/zeta.sock.lock"),
    ];
    for k in &keep {
        std::fs::create_dir_all(k.parent().unwrap()).unwrap();
        std::fs::write(k, "keep me").unwrap();
    }

    runner.clear();
    let report = uninstall(&opts.host).unwrap();
    eprintln!("{report}");
    assert!(!units.join("zeta-mlxd.service").exists());
    assert!(!units.join("zeta-gateway.service").exists());
    assert!(std::fs::symlink_metadata(wants.join("zeta-mlxd.service")).is_err());
    assert!(units.join("other.service").is_file());
    assert!(std::fs::symlink_metadata(wants.join("other.service")).is_ok());
    for k in &keep {
        assert_eq!(std::fs::read_to_string(k).unwrap(), "keep me", "{}", k.display());
    }
    assert_eq!(
        runner.calls(),
        [
            "systemctl --user is-system-running",
            "systemctl --user disable --now zeta-gateway.service zeta-mlxd.service",
            "systemctl --user daemon-reload",
            "systemctl --user reset-failed zeta-gateway.service zeta-mlxd.service",
        ]
    );

    // Twice is fine, and without a manager it still removes files and says why it skipped.
    let again = uninstall(&common::host(Platform::Linux, &f.home, None)).unwrap();
    assert!(again.removed.is_empty());
    assert!(again.skip_reason().is_some());
}

#[test]
fn install_refuses_an_installation_without_binaries() {
    let f = fixture();
    let mut opts = options(&f, Platform::Linux, None);
    opts.settings.prefix = f.home.join("not-installed");
    let err = install(&opts).unwrap_err();
    assert!(matches!(&err, Error::MissingBinary { path } if path.ends_with("bin/zeta-mlxd")), "{err}");
    assert!(!units_dir(&f.home).exists());

    opts.settings.prefix = PathBuf::from("relative/prefix");
    assert!(matches!(install(&opts).unwrap_err(), Error::InvalidPath { .. }));
}

#[test]
fn macos_install_writes_agents_and_bootstraps_them() {
    let f = fixture();
    let runner = FakeRunner::healthy();
    let opts = options(&f, Platform::MacOs, Some(runner.clone()));
    let report = install(&opts).unwrap();
    eprintln!("{report}");

    let log_dir = f.home.join("Library/Logs/zeta-mlx");
    assert!(log_dir.is_dir());
    for service in Service::ALL {
        let path = f.home.join("Library/LaunchAgents").join(service.plist_file_name());
        let expected = LaunchdJob::new(&opts.settings, &f.home, service).to_xml().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
        // launchd ignores agents that group or others can write.
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let d = common::plistlib_load(&path);
        assert_eq!(d["ProgramArguments"][0], opts.settings.binary(service).display().to_string());
        assert_eq!(d["StandardErrorPath"], log_dir.join(service.log_file_name()).display().to_string());
    }
    let agents = f.home.join("Library/LaunchAgents");
    let expected: Vec<String> = Service::ALL
        .iter()
        .flat_map(|s| {
            [
                format!("launchctl bootout gui/501/{}", s.label()),
                format!("launchctl enable gui/501/{}", s.label()),
                format!("launchctl bootstrap gui/501 {}", agents.join(s.plist_file_name()).display()),
            ]
        })
        .collect();
    assert_eq!(runner.calls(), expected);

    // Re-running reloads the same agents.
    runner.clear();
    let again = install(&opts).unwrap();
    assert_eq!(again.unchanged.len(), 2);
    assert_eq!(runner.calls(), expected);
}

#[test]
fn macos_install_falls_back_to_launchctl_load() {
    let f = fixture();
    let runner = FakeRunner::new(|cmd| {
        Ok(if cmd[1] == "bootstrap" && cmd[3].ends_with("gateway.plist") {
            failed(5, "Bootstrap failed: 5: Input/output error")
        } else {
            ok("")
        })
    });
    let opts = options(&f, Platform::MacOs, Some(runner.clone()));
    let report = install(&opts).unwrap();
    let plist = f.home.join("Library/LaunchAgents/com.zeta.mlx.gateway.plist");
    assert!(report.ran_command(&["launchctl", "load", "-w", &plist.display().to_string()]), "{report}");
    assert_eq!(runner.calls().iter().filter(|c| c.contains("bootstrap") && c.contains("gateway")).count(), 3);
}

#[test]
fn macos_install_fails_when_no_way_of_loading_works() {
    let f = fixture();
    let runner = FakeRunner::new(|cmd| {
        Ok(match cmd[1].as_str() {
            "bootstrap" => failed(125, "Bootstrap failed: 125: Domain does not support specified action"),
            "load" => ok_with_stderr("Load failed: 5: Input/output error"),
            _ => ok(""),
        })
    });
    let opts = options(&f, Platform::MacOs, Some(runner));
    let err = install(&opts).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("Domain does not support") && msg.contains("Load failed"), "{msg}");
}

fn ok_with_stderr(stderr: &str) -> CommandOutput {
    CommandOutput { code: Some(0), stdout: String::new(), stderr: stderr.to_owned() }
}

#[test]
fn macos_uninstall_boots_out_and_removes_only_the_agents() {
    let f = fixture();
    let opts = options(&f, Platform::MacOs, None);
    let installed = install(&opts).unwrap();
    assert_eq!(installed.skipped.len(), 2, "{installed}");
    let agents = f.home.join("Library/LaunchAgents");
    std::fs::write(agents.join("com.example.other.plist"), "x").unwrap();
    std::fs::write(f.home.join("Library/Logs/zeta-mlx/zeta-mlxd.log"), "old log").unwrap();

    // Not loaded: bootout fails, then the legacy unload is tried; both are tolerated.
    let runner = FakeRunner::new(|cmd| {
        Ok(if cmd[1] == "bootout" { failed(113, "Could not find specified service") } else { ok("") })
    });
    let host = common::host(Platform::MacOs, &f.home, Some(runner.clone()));
    let report = uninstall(&host).unwrap();
    assert_eq!(report.removed.len(), 2, "{report}");
    assert!(!agents.join("com.zeta.mlx.plist").exists());
    assert!(!agents.join("com.zeta.mlx.gateway.plist").exists());
    assert!(agents.join("com.example.other.plist").exists());
    assert!(f.home.join("Library/Logs/zeta-mlx/zeta-mlxd.log").exists());
    assert_eq!(runner.calls()[0], "launchctl bootout gui/501/com.zeta.mlx.gateway");
    assert!(runner.calls()[1].starts_with("launchctl unload "), "{:?}", runner.calls());
}

#[test]
fn macos_status_reads_launchctl_print() {
    let f = fixture();
    install(&options(&f, Platform::MacOs, None)).unwrap();
    std::fs::remove_file(f.home.join("Library/LaunchAgents/com.zeta.mlx.gateway.plist")).unwrap();
    let runner = FakeRunner::new(|cmd| {
        Ok(if cmd.last().unwrap().ends_with("com.zeta.mlx") {
            ok("gui/501/com.zeta.mlx = {\n\tstate = running\n\tpid = 321\n}\n")
        } else {
            failed(113, "Could not find service \"com.zeta.mlx.gateway\" in domain for user gui: 501")
        })
    });
    let st = status(&common::host(Platform::MacOs, &f.home, Some(runner))).unwrap();
    eprintln!("{st}");
    let daemon = st.get(Service::Daemon).unwrap();
    assert!(daemon.installed);
    assert_eq!(daemon.state, RunState::Running { pid: Some(321) });
    let gateway = st.get(Service::Gateway).unwrap();
    assert!(!gateway.installed);
    assert_eq!(gateway.state, RunState::NotLoaded);
}

#[test]
fn linux_status_reads_systemctl_show_or_says_why_not() {
    let f = fixture();
    install(&options(&f, Platform::Linux, None)).unwrap();

    let st = status(&common::host(Platform::Linux, &f.home, Some(FakeRunner::healthy()))).unwrap();
    for s in &st.services {
        assert!(s.installed);
        assert!(matches!(&s.state, RunState::Unknown { reason } if reason.contains("XDG_RUNTIME_DIR")), "{st}");
    }

    let runner = FakeRunner::new(|cmd| {
        Ok(if cmd.iter().any(|a| a == "is-system-running") {
            ok("running\n")
        } else if cmd.last().unwrap() == "zeta-mlxd.service" {
            ok("LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=99\n")
        } else {
            ok("LoadState=loaded\nActiveState=failed\nSubState=failed\nMainPID=0\n")
        })
    });
    let mut host = common::host(Platform::Linux, &f.home, Some(runner));
    host.xdg_runtime_dir = Some(f.home.join("run"));
    let st = status(&host).unwrap();
    assert_eq!(st.get(Service::Daemon).unwrap().state, RunState::Running { pid: Some(99) });
    assert!(
        matches!(&st.get(Service::Gateway).unwrap().state, RunState::Stopped { detail } if detail.contains("failed"))
    );
}

#[test]
fn logs_point_where_each_platform_keeps_them() {
    let home = Path::new("/Users/you");
    let mac = logs(&common::host(Platform::MacOs, home, None));
    assert_eq!(mac[0].location, LogLocation::File(PathBuf::from("/Users/you/Library/Logs/zeta-mlx/zeta-mlxd.log")));
    assert_eq!(mac[1].location, LogLocation::File(PathBuf::from("/Users/you/Library/Logs/zeta-mlx/zeta-gateway.log")));
    let linux = logs(&common::host(Platform::Linux, Path::new("/home/you"), None));
    assert_eq!(
        linux[0].location,
        LogLocation::Command(["journalctl", "--user", "-u", "zeta-mlxd"].map(String::from).to_vec())
    );
    assert_eq!(linux[1].to_string(), "zeta-gateway: journalctl --user -u zeta-gateway");
}
