//! The systemd user units: `systemd-analyze verify` accepts them where the tool exists (and
//! rejects a broken one, so the check means something), and their fields are right either way.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use zeta_launchd::{Service, Settings, systemd_unit};

/// `[section] key` -> values, in order. Written here rather than reused from the crate so the
/// units are read by something other than what wrote them.
fn parse_unit(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with(['#', ';'])) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        out.entry((section.clone(), k.trim().to_owned())).or_default().push(v.trim().to_owned());
    }
    out
}

fn one<'a>(unit: &'a BTreeMap<(String, String), Vec<String>>, section: &str, key: &str) -> &'a str {
    let v = unit.get(&(section.to_owned(), key.to_owned())).unwrap_or_else(|| panic!("[{section}] {key} missing"));
    assert_eq!(v.len(), 1, "[{section}] {key} set {} times", v.len());
    &v[0]
}

#[test]
fn unit_fields() {
    let settings = Settings::new("/usr/local");
    let home = Path::new("/home/you");
    for service in Service::ALL {
        let text = systemd_unit(&settings, home, service);
        let u = parse_unit(&text);
        let exec = one(&u, "Service", "ExecStart");
        let argv0 = exec.split_whitespace().next().unwrap();
        assert_eq!(argv0, format!("/usr/local/bin/{}", service.binary_name()));
        assert_eq!(one(&u, "Service", "Restart"), "on-failure");
        assert_eq!(one(&u, "Service", "RestartSec"), "10");
        assert_eq!(one(&u, "Service", "TimeoutStopSec"), "45");
        assert!(["SIGINT", "SIGTERM"].contains(&one(&u, "Service", "KillSignal")));
        assert_eq!(one(&u, "Service", "LimitNOFILE"), "4096");
        assert_eq!(one(&u, "Service", "WorkingDirectory"), "/home/you");
        let env = one(&u, "Service", "Environment");
        assert!(env.contains("\"HF_HOME=/home/you/.cache/huggingface\""), "{env}");
        assert!(env.contains("\"RUST_LOG=info\""), "{env}");
        assert_eq!(one(&u, "Install", "WantedBy"), "default.target");
        assert!(!one(&u, "Unit", "Description").is_empty());
        match service {
            Service::Daemon => {
                assert!(exec.contains("--log-format text"), "{exec}");
                assert!(!u.contains_key(&("Unit".to_owned(), "Wants".to_owned())));
            }
            Service::Gateway => {
                assert!(exec.contains("--listen 127.0.0.1:8000"), "{exec}");
                assert_eq!(one(&u, "Unit", "Wants"), "zeta-mlxd.service");
                assert_eq!(one(&u, "Unit", "After"), "zeta-mlxd.service");
            }
        }
    }
}

fn systemd_analyze() -> Option<&'static str> {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if found { Some("systemd-analyze") } else { None }
}

/// Runs `systemd-analyze verify` on the given units and returns its complaints about them
/// (it also reports on unrelated units of the host, which are not ours to judge).
fn verify(dir: &Path, units: &[&str]) -> Result<(), String> {
    let out = Command::new(systemd_analyze().unwrap())
        .args(["verify", "--man=no"])
        .args(units.iter().map(|u| dir.join(u)))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| units.iter().any(|u| l.contains(u))).collect();
    if out.status.success() && ours.is_empty() {
        Ok(())
    } else {
        Err(format!("exit {:?}\n{stderr}", out.status.code()))
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if systemd_analyze().is_none() {
        eprintln!(
            "skipping systemd-analyze verify: systemd-analyze is not installed (the unit fields are checked by unit_fields)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let prefix = common::fake_prefix(tmp.path());
    let home = tmp.path().join("home with space");
    std::fs::create_dir_all(&home).unwrap();
    let mut settings = Settings::new(&prefix);
    settings.socket = Some(tmp.path().join("run/50%$ off.sock"));
    let dir = tmp.path().join("units");
    std::fs::create_dir_all(&dir).unwrap();
    let names: Vec<String> = Service::ALL.iter().map(|s| s.unit_name()).collect();
    for (service, name) in Service::ALL.iter().zip(&names) {
        std::fs::write(dir.join(name), systemd_unit(&settings, &home, *service)).unwrap();
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    if let Err(e) = verify(&dir, &names) {
        panic!("systemd-analyze verify rejected the units:\n{e}");
    }

    // The same check must catch a broken unit, or passing it proves nothing.
    let broken = systemd_unit(&settings, &home, Service::Daemon).replace(
        &prefix.join("bin/zeta-mlxd").display().to_string(),
        &tmp.path().join("nowhere/zeta-mlxd").display().to_string(),
    );
    std::fs::write(dir.join("zeta-broken.service"), broken).unwrap();
    assert!(verify(&dir, &["zeta-broken.service"]).is_err(), "verify accepted a unit whose binary does not exist");
}

#[test]
fn drain_time_and_binaries_folder_reach_the_unit() {
    let mut settings = Settings::new("/opt/zeta");
    settings.exit_timeout_secs = 135;
    settings.bin = Some("/src/zeta-mlx/target/release".into());
    settings.config = Some("/home/you/my config.toml".into());
    settings.hf_env = vec![("HF_HOME".into(), "/data/hf".into()), ("HF_HUB_CACHE".into(), "/data/hub".into())];
    let home = Path::new("/home/you");
    for service in Service::ALL {
        let u = parse_unit(&systemd_unit(&settings, home, service));
        assert_eq!(one(&u, "Service", "TimeoutStopSec"), "135");
        // The installing shell's Hugging Face cache, not the default one.
        let env = one(&u, "Service", "Environment");
        assert!(env.contains("\"HF_HOME=/data/hf\"") && env.contains("\"HF_HUB_CACHE=/data/hub\""), "{env}");
        let exec = one(&u, "Service", "ExecStart");
        assert!(exec.starts_with(&format!("/src/zeta-mlx/target/release/{}", service.binary_name())), "{exec}");
    }
    // By hand, the gateway needs the config the unit gives it in its environment.
    assert_eq!(
        settings.shell_command(Service::Gateway),
        "ZETA_MLX_CONFIG='/home/you/my config.toml' /src/zeta-mlx/target/release/zeta-gateway --listen 127.0.0.1:8000"
    );
}
