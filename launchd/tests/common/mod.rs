//! Helpers shared by the integration tests: a fake installation prefix, a command runner that
//! records calls instead of touching the real service manager, and Python's plistlib.

#![allow(dead_code)]

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use zeta_launchd::{CommandOutput, CommandRunner, Host, Platform, Service};

/// A prefix holding executable stand-ins for both binaries, so install's binary check and
/// `systemd-analyze verify`'s ExecStart check see real files.
pub fn fake_prefix(root: &Path) -> PathBuf {
    let prefix = root.join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    for s in Service::ALL {
        let bin = prefix.join("bin").join(s.binary_name());
        std::fs::write(&bin, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    prefix
}

type Responder = dyn Fn(&[String]) -> io::Result<CommandOutput> + Send + Sync;

/// Records every command and answers with `respond`.
pub struct FakeRunner {
    pub calls: Mutex<Vec<Vec<String>>>,
    respond: Box<Responder>,
}

impl FakeRunner {
    pub fn new(respond: impl Fn(&[String]) -> io::Result<CommandOutput> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(FakeRunner { calls: Mutex::new(Vec::new()), respond: Box::new(respond) })
    }

    /// Every command succeeds with no output, except `is-system-running`, which says `running`.
    pub fn healthy() -> Arc<Self> {
        FakeRunner::new(|cmd| {
            let stdout = if cmd.iter().any(|a| a == "is-system-running") { "running\n" } else { "" };
            Ok(ok(stdout))
        })
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|c| c.join(" ")).collect()
    }

    pub fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }
}

impl CommandRunner for FakeRunner {
    fn run(&self, program: &str, args: &[String]) -> io::Result<CommandOutput> {
        let mut cmd = vec![program.to_owned()];
        cmd.extend(args.iter().cloned());
        self.calls.lock().unwrap().push(cmd.clone());
        (self.respond)(&cmd)
    }
}

pub fn ok(stdout: &str) -> CommandOutput {
    CommandOutput { code: Some(0), stdout: stdout.to_owned(), stderr: String::new() }
}

pub fn failed(code: i32, stderr: &str) -> CommandOutput {
    CommandOutput { code: Some(code), stdout: String::new(), stderr: stderr.to_owned() }
}

/// A host under a temporary home, using `runner` (or none).
pub fn host(platform: Platform, home: &Path, runner: Option<Arc<FakeRunner>>) -> Host {
    let mut host = Host::files_only(platform, home);
    host.uid = 501;
    host.runner = runner.map(|r| r as Arc<dyn CommandRunner>);
    host
}

/// The Python that has plistlib: `ZETA_PYTHON`, else the workspace's `.venv`, else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ZETA_PYTHON") {
        return PathBuf::from(p);
    }
    zeta_fixtures::try_python().unwrap_or_else(|_| PathBuf::from("python3"))
}

/// Loads a plist with Python's plistlib and returns it as JSON.
pub fn plistlib_load(path: &Path) -> serde_json::Value {
    let script = "import json, plistlib, sys\nwith open(sys.argv[1], 'rb') as f:\n    d = plistlib.load(f)\nprint(json.dumps(d))\n";
    let out = Command::new(python())
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", python().display()));
    assert!(out.status.success(), "plistlib rejected {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("plistlib output is JSON")
}
