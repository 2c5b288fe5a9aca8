//! The daemon as a process: one instance per socket, stale sockets, other users refused,
//! configuration errors, and SIGTERM draining.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use tonic::Code;
use zeta_proto::v1;
use zeta_tests::{Daemon, bin, generate, tiny_config, tokens};

#[tokio::test(flavor = "multi_thread")]
async fn a_second_instance_exits_and_a_stale_socket_is_replaced() {
    let dir = tempfile::Builder::new().prefix("zeta-e2e-").tempdir_in("/tmp").unwrap();
    let socket = dir.path().join("zeta.sock");
    // A stale socket: bound once, its process gone.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let config = tiny_config("preload_default = false", &[]);
    let d = Daemon::builder().config(&config).socket(&socket).start().await;
    assert!(d.logs().contains("removing stale socket"), "{}", d.logs());
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode");

    let out =
        Command::new(bin("zeta-mlxd")).arg("--config").arg(&d.config).arg("--socket").arg(&socket).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already serving") && err.contains(&format!("pid {}", d.pid())), "{err}");
    // The first one is unharmed.
    d.status().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_socket_directory_is_private_and_other_users_are_refused() {
    let d = Daemon::builder().config("preload_default = false").start().await;
    let dir = d.socket.parent().unwrap();
    assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700);
    let nobody = 65534;
    let probe = |who: Option<u32>| {
        let mut c = Command::new(bin("zeta-probe"));
        c.arg(&d.socket);
        if let Some(uid) = who {
            c.uid(uid).gid(uid);
        }
        c.output().unwrap()
    };
    assert!(probe(None).status.success(), "the owner is answered");
    // Through the file system: the private directory keeps others out.
    let out = probe(Some(nobody));
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // With the permissions opened up, the daemon's own peer check still refuses them.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = probe(Some(nobody));
    assert!(!out.status.success(), "uid {nobody} was answered: {}", String::from_utf8_lossy(&out.stdout));
    let start = Instant::now();
    while !d.logs().contains("refused a connection from another user") {
        assert!(start.elapsed() < Duration::from_secs(5), "no refusal logged:\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(d.logs().contains("peer_uid=65534"), "{}", d.logs());
    assert!(probe(None).status.success(), "still serving its owner");
}

#[test]
fn a_bad_config_stops_start_up_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, needles) in [
        ("c.toml", "max_loaded = 2\nmax_loded = 3\n", vec!["max_loded", "line 2"]),
        ("c.yaml", "max_loaded: 2\nidle_unload_seconds: soon\n", vec!["idle_unload_seconds", "line 2"]),
        ("m.toml", "[models.x]\npath = \"/a\"\nhub = \"o/n\"\n", vec!["models.x", "exactly one"]),
        ("s.toml", "max_loaded = 2\nprefix_cache = true\n", vec!["line 2", "expected a size such as \"8GiB\""]),
        ("s.yaml", "memory_budget: -5\n", vec!["memory_budget", "-5 is negative"]),
        ("d.yaml", "max_batch: 4\nmax_batch: 5\n", vec!["\"max_batch\"", "line 2 (first at line 1)"]),
        ("n.yaml", "models:\n  a:\n    path: /x\n  a:\n    path: /y\n", vec!["models:", "\"a\" at line 4"]),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let out = Command::new(bin("zeta-mlxd"))
            .arg("--config")
            .arg(&p)
            .arg("--socket")
            .arg(dir.path().join("s.sock"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "{name}: '{err}' should mention '{n}'");
        }
        assert!(!dir.path().join("s.sock").exists());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_then_exits_cleanly_and_removes_the_socket() {
    let config = tiny_config("drain_timeout_seconds = 2", &[("tiny", "llama-f32")]);
    let mut d = Daemon::builder().config(&config).wait_ready().start().await;
    let mut g = d.generation().await;
    // A short request in flight finishes; an endless one is cancelled at the deadline.
    let mut short = tokens("tiny", vec![5, 6], 40);
    short.sampling.as_mut().unwrap().logit_bias = [(2, -100.0)].into();
    // SmolLM2 at ~15 tokens/s on this CPU: far longer than the deadline.
    let mut endless = zeta_tests::chat("", "Tell me a very long story.", 2000);
    endless.sampling.as_mut().unwrap().logit_bias = [(2, -100.0)].into();
    let mut long_stream = g.generate(endless).await.unwrap().into_inner();
    long_stream.message().await.unwrap();
    // Admitted (its first event came) before the signal, however busy the machine is.
    let mut short_stream = g.generate(short).await.unwrap().into_inner();
    let mut first = zeta_tests::Outcome::default();
    first.add(short_stream.message().await.unwrap().expect("the short request's first event"));
    let short_task = tokio::spawn(zeta_tests::collect(short_stream, first));
    let t0 = Instant::now();
    d.signal(libc::SIGTERM);
    // New work is refused while draining.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Err(e) = generate(&mut g, tokens("tiny", vec![1], 2)).await {
        assert_eq!(e.code(), Code::Unavailable, "{}", e.message());
    }
    let short_out = short_task.await.unwrap().expect("the short request finishes during the drain");
    assert_eq!(short_out.tokens.len(), 40);
    // The endless stream ends (with an error) once the deadline passes.
    let mut ended_with = None;
    loop {
        match long_stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => {
                ended_with = Some(e.code());
                break;
            }
        }
    }
    assert_eq!(ended_with, Some(Code::Unavailable));
    let status = d.wait_exit(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "exit status {status}");
    let took = t0.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(10), "took {took:?}");
    assert!(!d.socket.exists(), "socket removed");
    assert!(d.logs().contains("draining"), "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_drains_too_and_a_second_signal_cuts_the_drain_short() {
    let config = tiny_config("drain_timeout_seconds = 120", &[("tiny", "llama-f32")]);
    let mut d = Daemon::builder().config(&config).wait_ready().start().await;
    let mut g = d.generation().await;
    let mut endless = zeta_tests::chat("", "Tell me a very long story.", 2000);
    endless.sampling.as_mut().unwrap().logit_bias = [(2, -100.0)].into();
    let mut stream = g.generate(endless).await.unwrap().into_inner();
    stream.message().await.unwrap();
    // Its model unloaded meanwhile: the engine lives on for the stream, and must stop too.
    let unload = v1::UnloadModelRequest { model: String::new(), force: true };
    assert!(d.models().await.unload_model(unload).await.unwrap().into_inner().was_loaded);
    // A closed terminal drains (new work refused, the stream still running), not a kill.
    d.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = generate(&mut g, tokens("tiny", vec![1], 2)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());
    assert!(stream.message().await.unwrap().is_some(), "still streaming during the drain");
    // Ctrl-C again: the rest is cancelled now, not after the 120 s deadline, and the exit is clean.
    let t0 = Instant::now();
    d.signal(libc::SIGINT);
    let ended = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    assert_eq!(ended.err().map(|e| e.code()), Some(Code::Unavailable), "the stream is cancelled, not cut");
    let status = d.wait_exit(Duration::from_secs(20)).expect("exits soon after the second signal");
    assert!(status.success(), "exit status {status}");
    // Not the 5 s the server gives connections that will not close.
    assert!(t0.elapsed() < Duration::from_secs(4), "took {:?}", t0.elapsed());
    assert!(!d.socket.exists(), "socket removed");
    assert!(d.logs().contains("drain cut short"), "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_a_span_per_request() {
    let config = tiny_config("preload_default = false\nlog_format = \"json\"", &[("tiny", "llama-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let mut req = tokens("tiny", vec![1, 2], 2);
    req.request_id = "req-json-check".into();
    generate(&mut d.generation().await, req).await.unwrap();
    let logs = d.logs();
    let line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "finished")
        .unwrap_or_else(|| panic!("no JSON 'finished' line:\n{logs}"));
    let span = &line["span"];
    assert_eq!(span["request_id"], "req-json-check", "{line}");
    assert_eq!(span["model"], "tiny", "{line}");
    // Values as JSON reads them, not Rust's Debug text (`Some(0)`, `Length`).
    assert!(span["peer_uid"].is_u64(), "{line}");
    assert_eq!(
        (span["caller"].as_str(), line["fields"]["reason"].as_str()),
        (Some("socket"), Some("length")),
        "{line}"
    );
}
