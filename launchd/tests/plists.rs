//! The launchd agents: the committed examples equal the generator's output byte for byte, and
//! every generated agent is a property list Python's plistlib reads, with the keys, values and
//! absolute paths the service needs.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use zeta_launchd::{LaunchdJob, Service, Settings};

fn committed(service: Service) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(service.plist_file_name())
}

#[test]
fn committed_plists_equal_the_generator() {
    for service in Service::ALL {
        let generated = LaunchdJob::example(service).to_xml().unwrap();
        let path = committed(service);
        if std::env::var_os("ZETA_LAUNCHD_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with ZETA_LAUNCHD_BLESS=1 to write it)", path.display()));
        assert!(
            on_disk == generated,
            "{} differs from the generator; run `ZETA_LAUNCHD_BLESS=1 cargo test -p zeta-launchd` and review the diff\n--- committed\n{on_disk}\n--- generated\n{generated}",
            path.display()
        );
    }
}

/// Checks one agent as launchd will see it, through an independent reader.
fn check_agent(path: &Path, service: Service, prefix: &str, home: &str) {
    let d = common::plistlib_load(path);
    let keys: BTreeSet<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "Label",
        "ProgramArguments",
        "RunAtLoad",
        "KeepAlive",
        "ThrottleInterval",
        "ExitTimeOut",
        "ProcessType",
        "WorkingDirectory",
        "EnvironmentVariables",
        "StandardOutPath",
        "StandardErrorPath",
        "SoftResourceLimits",
        "HardResourceLimits",
    ]
    .into();
    assert_eq!(keys, expected, "{}", path.display());

    assert_eq!(d["Label"], service.label());
    let args: Vec<&str> = d["ProgramArguments"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[0], format!("{prefix}/bin/{}", service.binary_name()));
    assert!(Path::new(args[0]).is_absolute());
    // Every value after a path-taking flag is absolute too.
    for pair in args.windows(2) {
        if matches!(pair[0], "--config" | "--socket") {
            assert!(Path::new(pair[1]).is_absolute(), "{} {}", pair[0], pair[1]);
        }
    }
    match service {
        Service::Daemon => assert!(args.windows(2).any(|w| w == ["--log-format", "text"]), "{args:?}"),
        Service::Gateway => assert!(args.windows(2).any(|w| w == ["--listen", "127.0.0.1:8000"]), "{args:?}"),
    }

    assert_eq!(d["RunAtLoad"], true);
    assert_eq!(d["KeepAlive"], json!({"SuccessfulExit": false}));
    assert_eq!(d["ThrottleInterval"], 10);
    let exit_timeout = d["ExitTimeOut"].as_u64().unwrap();
    assert!(exit_timeout > 30, "ExitTimeOut {exit_timeout} must outlast the daemon's 30 s drain");
    assert_eq!(exit_timeout, 45);
    assert!(
        ["Background", "Standard", "Adaptive", "Interactive"].contains(&d["ProcessType"].as_str().unwrap()),
        "{}",
        d["ProcessType"]
    );
    assert_eq!(d["WorkingDirectory"], home);

    let log = format!("{home}/Library/Logs/zeta-mlx/{}.log", service.binary_name());
    assert_eq!(d["StandardOutPath"], log.as_str());
    assert_eq!(d["StandardErrorPath"], log.as_str());

    let env = &d["EnvironmentVariables"];
    assert_eq!(env["HF_HOME"], format!("{home}/.cache/huggingface"));
    assert_eq!(env["RUST_LOG"], "info");
    for v in env.as_object().unwrap().values() {
        assert!(v.is_string(), "launchd only takes string environment values: {v}");
    }

    for limits in ["SoftResourceLimits", "HardResourceLimits"] {
        assert_eq!(d[limits], json!({"NumberOfFiles": 4096}), "{limits}");
    }
}

#[test]
fn committed_plists_parse_with_plistlib() {
    for service in Service::ALL {
        check_agent(&committed(service), service, "/usr/local", "/Users/you");
    }
}

#[test]
fn agents_for_another_install_carry_its_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = "/Applications/Zeta MLX.app/Contents/Resources";
    let home = "/Users/Jane Doe";
    let mut settings = Settings::new(prefix);
    settings.config = Some(PathBuf::from(format!("{home}/Library/Application Support/zeta-mlx/config.toml")));
    settings.socket = Some(PathBuf::from("/tmp/z & <sock>.sock"));
    for service in Service::ALL {
        let job = LaunchdJob::new(&settings, Path::new(home), service);
        let path = tmp.path().join(service.plist_file_name());
        std::fs::write(&path, job.to_xml().unwrap()).unwrap();
        check_agent(&path, service, prefix, home);

        let d = common::plistlib_load(&path);
        let args: Vec<Value> = d["ProgramArguments"].as_array().unwrap().clone();
        // XML special characters survive the round trip, and both services share the socket.
        assert!(args.iter().any(|a| a == "/tmp/z & <sock>.sock"), "{args:?}");
        match service {
            Service::Daemon => assert!(args.iter().any(|a| a == "--config"), "{args:?}"),
            Service::Gateway => assert_eq!(
                d["EnvironmentVariables"]["ZETA_MLX_CONFIG"],
                format!("{home}/Library/Application Support/zeta-mlx/config.toml")
            ),
        }
    }
}
