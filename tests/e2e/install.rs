//! The installation stands alone: `make install` into a temporary prefix, then the
//! installed binaries' rpaths are relative and every library resolves inside the prefix; with
//! `.venv` hidden from the environment (no VIRTUAL_ENV, PYTHONPATH or LD_LIBRARY_PATH, PATH
//! without .venv, another working directory) the installed `zeta-mlxd` serves the GGUF under
//! the prefix, maps nothing from the checkout, and the installed `zeta` lists models and streams
//! a reply; a second install over the running daemon leaves the same tree and the daemon
//! serving; `zeta service install` under a temporary HOME writes the units, skipping the
//! systemctl steps with a printed reason where no user systemd runs.
//!
//! Cost: the test runs `make install PREFIX=... BIN_DIR=...` with the binaries `make test` has
//! just built (the test's own target profile) instead of building release binaries, so an
//! install takes a few seconds (copying ~200 MB: MLX, OpenBLAS, the model). With
//! `ZETA_TEST_MAKE_INSTALL=1` it leaves out `BIN_DIR`, so `make install` builds release binaries
//! first (23 minutes from scratch on a busy 2-core machine, seconds when `target/release` is
//! current).
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::hash::Hasher as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use zeta_hub::testing::files_in;
use zeta_tests::{bin, root};

const MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn ok(what: &str, out: &Output) -> String {
    assert!(out.status.success(), "{what} failed ({}):\n{}\n{}", out.status, text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// An environment with nothing of the checkout in it: no virtualenv, no library path, a PATH
/// of system folders only, a fresh HOME, and no XDG_RUNTIME_DIR (so no systemd user manager).
fn clean<'a>(cmd: &'a mut Command, home: &Path, cwd: &Path) -> &'a mut Command {
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("HF_HUB_OFFLINE", "1")
        .env("RUST_LOG", "info")
        .current_dir(cwd)
        .stdin(Stdio::null())
}

/// Runs `make install` into `prefix` and says how long it took.
fn install(prefix: &Path) -> Duration {
    let started = Instant::now();
    let mut make = Command::new("make");
    make.arg("install").arg(format!("PREFIX={}", prefix.display())).current_dir(root());
    if std::env::var_os("ZETA_TEST_MAKE_INSTALL").is_none() {
        make.arg(format!("BIN_DIR={}", bin("zeta-mlxd").parent().unwrap().display()));
    }
    let out = make.output().expect("run the installer");
    ok("install", &out);
    started.elapsed()
}

/// Every file under `dir` (symlinks not followed), with a hash of its content or link target.
fn tree(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            if meta.is_dir() {
                stack.push(p);
                continue;
            } else if meta.file_type().is_symlink() {
                h.write(std::fs::read_link(&p).unwrap().as_os_str().as_encoded_bytes());
            } else {
                let mut f = std::fs::File::open(&p).unwrap();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    h.write(&buf[..n]);
                }
            }
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), h.finish());
        }
    }
    out
}

/// Kills the installed daemon however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn install_stands_alone() {
    let root = root();
    let work = tempfile::Builder::new().prefix("zeta-install-").tempdir_in("/tmp").unwrap();
    let (home, cwd) = (work.path().join("home"), work.path().join("elsewhere"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(work.path().join("prefix")).unwrap();
    let prefix = work.path().join("prefix").canonicalize().unwrap();

    let took = install(&prefix);
    eprintln!("install into {}: {:.1} s", prefix.display(), took.as_secs_f64());
    let installed = tree(&prefix);
    for b in ["zeta-mlxd", "zeta", "zeta-chat"] {
        assert!(installed.contains_key(&Path::new("bin").join(b)), "bin/{b} not installed: {installed:?}");
    }
    let gateway_in_workspace = root.join("gateway/Cargo.toml").is_file();
    assert_eq!(installed.contains_key(Path::new("bin/zeta-gateway")), gateway_in_workspace);
    assert!(installed.contains_key(&Path::new("share/zeta-mlx/models").join(MODEL)));
    assert!(installed.keys().any(|p| p.starts_with("lib/zeta-mlx/mlx/lib")), "{installed:?}");

    check_links(&prefix, &root);
    check_rpaths(&prefix, &root);
    #[cfg(target_os = "linux")]
    check_ldd(&prefix, &root);

    // The installed daemon, from another folder, with nothing of the checkout in its environment.
    let socket = work.path().join("run/zeta.sock");
    let log = work.path().join("daemon.log");
    let daemon = clean(&mut Command::new(prefix.join("bin/zeta-mlxd")), &home, &cwd)
        .arg("--socket")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the installed zeta-mlxd");
    let mut daemon = Running(daemon);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let zeta = |args: &[&str]| -> Output {
        clean(&mut Command::new(prefix.join("bin/zeta")), &home, &cwd)
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .expect("run the installed zeta")
    };
    let started = Instant::now();
    loop {
        let out = zeta(&["status"]);
        if out.status.success() && text(&out.stdout).contains("state: ready") {
            break;
        }
        if let Some(status) = daemon.0.try_wait().unwrap() {
            panic!("the installed zeta-mlxd exited with {status}:\n{}", logs());
        }
        assert!(started.elapsed() < Duration::from_secs(120), "not ready in 120 s:\n{}\n{}", text(&out.stderr), logs());
        std::thread::sleep(Duration::from_millis(200));
    }

    #[cfg(target_os = "linux")]
    check_mapped_files(daemon.0.id(), &prefix, &root);

    // The default model is the GGUF under the prefix, not the one in .venv.
    let models = ok("zeta models", &zeta(&["models"]));
    let row = models.lines().find(|l| l.starts_with("smollm2-135m ")).unwrap_or_else(|| panic!("{models}"));
    let source = row.split_whitespace().last().unwrap();
    assert_eq!(Path::new(source), prefix.join("share/zeta-mlx/models").join(MODEL), "{models}");
    let ask = || {
        let out = zeta(&[
            "run",
            "smollm2-135m",
            "What is the capital of France?",
            "--temperature",
            "0",
            "--max-tokens",
            "24",
        ]);
        let answer = ok("zeta run", &out);
        assert!(answer.contains("Paris"), "{answer}\n{}", logs());
    };
    ask();

    // Installing again over the running daemon: same tree, and the daemon keeps serving.
    let took = install(&prefix);
    eprintln!("second install: {:.1} s", took.as_secs_f64());
    assert_eq!(tree(&prefix), installed, "a second install changed the installation");
    ask();

    service_install(&prefix, &home, &cwd, gateway_in_workspace);
    drop(daemon);
}

/// No symlink in the prefix points outside it (a copied wheel folder could hold absolute ones).
fn check_links(prefix: &Path, root: &Path) {
    for rel in files_in(prefix) {
        let p = prefix.join(rel);
        if let Ok(target) = std::fs::read_link(&p) {
            let resolved = p.parent().unwrap().join(&target).canonicalize().unwrap();
            assert!(
                resolved.starts_with(prefix) && !resolved.starts_with(root),
                "{} -> {}",
                p.display(),
                target.display()
            );
        }
    }
}

/// The rpath entries of every installed binary and library are relative to the file itself.
fn check_rpaths(prefix: &Path, root: &Path) {
    let venv = root.join(".venv");
    let mut checked = 0;
    for rel in files_in(prefix) {
        let p = prefix.join(rel);
        let Some(entries) = rpath_entries(&p) else { continue };
        checked += 1;
        for e in entries {
            assert!(
                !e.contains(&*root.to_string_lossy()) && !e.contains(&*venv.to_string_lossy()),
                "{}: {e}",
                p.display()
            );
            let relative = if cfg!(target_os = "linux") {
                e.starts_with("$ORIGIN")
            } else {
                e.starts_with("@executable_path") || e.starts_with("@loader_path")
            };
            assert!(relative, "{} has the rpath entry {e}, which is not relative to it", p.display());
        }
    }
    assert!(checked >= 4, "only {checked} binaries or libraries found under {}", prefix.display());
}

/// The rpath entries of an executable or shared library; `None` for any other file.
#[cfg(target_os = "linux")]
fn rpath_entries(p: &Path) -> Option<Vec<String>> {
    let mut magic = [0u8; 4];
    std::fs::File::open(p).ok()?.read_exact(&mut magic).ok()?;
    if magic != *b"\x7fELF" {
        return None;
    }
    let out = Command::new("readelf").arg("-d").arg(p).output().expect("readelf (binutils)");
    let dynamic = ok("readelf -d", &out);
    Some(
        dynamic
            .lines()
            .filter(|l| l.contains("(RUNPATH)") || l.contains("(RPATH)"))
            .filter_map(|l| Some(l[l.find('[')? + 1..l.rfind(']')?].to_owned()))
            .flat_map(|v| v.split(':').map(str::to_owned).collect::<Vec<_>>())
            .collect(),
    )
}

#[cfg(target_os = "macos")]
fn rpath_entries(p: &Path) -> Option<Vec<String>> {
    let out = Command::new("otool").arg("-l").arg(p).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let listing = text(&out.stdout);
    let mut lines = listing.lines();
    let mut entries = Vec::new();
    while let Some(l) = lines.next() {
        if l.trim() == "cmd LC_RPATH" {
            lines.next();
            let path = lines.next().unwrap_or("").trim();
            entries.push(path.trim_start_matches("path ").split(" (offset").next().unwrap_or("").to_owned());
        }
    }
    Some(entries)
}

/// Every library the daemon and zeta-chat need resolves, and MLX's (and the OpenBLAS shim's)
/// from the prefix, with a clean environment.
#[cfg(target_os = "linux")]
fn check_ldd(prefix: &Path, root: &Path) {
    for b in ["zeta-mlxd", "zeta-chat"] {
        let exe = prefix.join("bin").join(b);
        let out = Command::new("ldd").arg(&exe).env_clear().env("PATH", "/usr/bin:/bin").output().expect("ldd");
        let listing = ok("ldd", &out);
        assert!(!listing.contains("not found"), "{b}:\n{listing}");
        let mut resolved = BTreeMap::new();
        for l in listing.lines() {
            let words: Vec<&str> = l.split_whitespace().collect();
            if let [name, "=>", path, ..] = words[..] {
                let real = Path::new(path).canonicalize().unwrap_or_else(|e| panic!("{path}: {e}"));
                assert!(!real.starts_with(root), "{b} loads {name} from the checkout: {}", real.display());
                resolved.insert(name.to_owned(), real);
            }
        }
        let readelf = ok("readelf", &Command::new("readelf").arg("-d").arg(&exe).output().unwrap());
        let mut ours = vec!["libmlx.so"];
        if readelf.contains("[libzeta_cblas.so]") {
            ours.extend(["libzeta_cblas.so", "libscipy_openblas.so"]);
        }
        for name in ours {
            let at = resolved.get(name).unwrap_or_else(|| panic!("{b} does not load {name}:\n{listing}"));
            assert!(at.starts_with(prefix.join("lib/zeta-mlx")), "{b} loads {name} from {}", at.display());
        }
    }
}

/// What the running daemon actually mapped: its libraries from the prefix, nothing from the
/// checkout or its .venv.
#[cfg(target_os = "linux")]
fn check_mapped_files(pid: u32, prefix: &Path, root: &Path) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let files: std::collections::BTreeSet<&str> =
        maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter(|p| p.starts_with('/')).collect();
    for f in &files {
        assert!(!Path::new(f).starts_with(root), "the installed daemon mapped {f} from the checkout");
    }
    let libmlx = prefix.join("lib/zeta-mlx/mlx/lib/libmlx.so");
    assert!(files.contains(&*libmlx.to_string_lossy()), "libmlx not mapped from the prefix: {files:?}");
}

/// `zeta service install` under a temporary HOME writes the units for this prefix; without a
/// systemd user manager (no XDG_RUNTIME_DIR here) it skips the systemctl steps and says why.
fn service_install(prefix: &Path, home: &Path, cwd: &Path, gateway: bool) {
    let zeta = |args: &[&str]| -> Output {
        clean(&mut Command::new(prefix.join("bin/zeta")), home, cwd).args(args).output().expect("run zeta service")
    };
    let mut args = vec!["service", "install"];
    if cfg!(target_os = "macos") {
        // launchctl would load the agents into the real login session.
        args.push("--no-start");
    }
    if !gateway {
        let out = zeta(&args);
        let err = text(&out.stderr);
        assert!(!out.status.success() && err.contains("zeta-gateway"), "{err}");
        return;
    }
    let dir =
        if cfg!(target_os = "macos") { home.join("Library/LaunchAgents") } else { home.join(".config/systemd/user") };
    // Settings the services would refuse at every start are refused here, before any file is
    // written, in the services' own words.
    let bad = home.join("bad.toml");
    std::fs::write(&bad, "max_batch = 8\nmax_loaded = 0\n").unwrap();
    let bad_config = [&["--config", bad.to_str().unwrap()], &args[..]].concat();
    let bad_listen = [&args[..], &["--listen", "127.0.0.1:http-ish"]].concat();
    for (case, why) in
        [(bad_config, "line 2: max_loaded: must be at least 1"), (bad_listen, "cannot listen on 127.0.0.1:http-ish")]
    {
        let refused = zeta(&case);
        let err = text(&refused.stderr);
        assert!(
            !refused.status.success() && err.contains(why) && err.contains("nothing was installed"),
            "{case:?}: {err}"
        );
        assert!(
            !dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none(),
            "{case:?} wrote into {}",
            dir.display()
        );
    }
    // Listening beyond this machine without a key is allowed, and said.
    let open = zeta(&[&args[..], &["--listen", "0.0.0.0:8123"]].concat());
    ok("zeta service install (0.0.0.0)", &open);
    assert!(text(&open.stderr).contains("with no API key"), "{}", text(&open.stderr));
    // A config with a long drain: the service manager waits for it, plus a margin, before a kill.
    let slow = home.join("slow.toml");
    std::fs::write(&slow, "drain_timeout_seconds = 100\n").unwrap();
    let report =
        ok("zeta service install (long drain)", &zeta(&[&["--config", slow.to_str().unwrap()], &args[..]].concat()));
    let unit = if cfg!(target_os = "macos") { "com.zeta.mlx.plist" } else { "zeta-mlxd.service" };
    let body = std::fs::read_to_string(dir.join(unit)).unwrap_or_else(|e| panic!("{e}\n{report}"));
    let waits = if cfg!(target_os = "macos") {
        body.contains("<key>ExitTimeOut</key>") && body.contains("<integer>115</integer>")
    } else {
        body.contains("TimeoutStopSec=115\n")
    };
    assert!(waits && body.contains(&*slow.to_string_lossy()), "{body}");
    let out = zeta(&args);
    let report = ok("zeta service install", &out);
    eprintln!("zeta service install:\n{report}");
    let files: Vec<PathBuf> = if cfg!(target_os = "macos") {
        vec![dir.join("com.zeta.mlx.plist"), dir.join("com.zeta.mlx.gateway.plist")]
    } else {
        vec![dir.join("zeta-mlxd.service"), dir.join("zeta-gateway.service")]
    };
    for (f, binary) in files.iter().zip(["zeta-mlxd", "zeta-gateway"]) {
        let body = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}\n{report}", f.display()));
        assert!(body.contains(&*prefix.join("bin").join(binary).to_string_lossy()), "{}:\n{body}", f.display());
        assert!(report.contains(&format!("wrote {}", f.display())), "{report}");
    }
    if cfg!(target_os = "linux") {
        assert!(report.contains("skipped `systemctl --user daemon-reload`: no systemd user manager"), "{report}");
        assert!(report.contains("XDG_RUNTIME_DIR is not set"), "{report}");
        verify_units(&files, home, cwd);
    }
    // Again: nothing to rewrite.
    let again = ok("zeta service install (again)", &zeta(&args));
    assert!(again.contains(&format!("unchanged {}", files[0].display())), "{again}");
    let status = ok("zeta service status", &zeta(&["service", "status"]));
    assert!(status.contains("zeta-mlxd: installed"), "{status}");
    let removed = ok("zeta service uninstall", &zeta(&["service", "uninstall"]));
    for f in &files {
        assert!(!f.exists() && removed.contains(&format!("removed {}", f.display())), "{removed}");
    }
}

/// `systemd-analyze verify` on the installed units (their binaries exist now), where it exists.
fn verify_units(files: &[PathBuf], home: &Path, cwd: &Path) {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping systemd-analyze verify: systemd-analyze is not installed");
        return;
    }
    let out = clean(&mut Command::new("systemd-analyze"), home, cwd).arg("verify").args(files).output().unwrap();
    ok("systemd-analyze verify", &out);
    let complaints = text(&out.stderr);
    assert!(!complaints.contains("zeta"), "systemd-analyze verify:\n{complaints}");
}
