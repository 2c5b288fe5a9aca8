//! `zeta`, the CLI, as a user runs it: with no daemon it exits non-zero with a one-line hint
//! naming the socket and the commands that start the daemon; against the real daemon (started
//! by the harness on a temporary socket, reached with `--socket`) it lists models, streams an
//! answer, counts tokens, loads and unloads with progress, keeps a chat's history, and turns
//! refused requests into one-line messages.
#![allow(clippy::print_stderr)]

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use zeta_proto::v1;
use zeta_tests::{Daemon, bin, tiny_config};

/// `zeta --socket SOCKET ARGS...` with no socket or config from the environment.
fn zeta(socket: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("zeta"));
    cmd.arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("ZETA_MLX_SOCKET")
        .env_remove("ZETA_MLX_CONFIG")
        .stdin(Stdio::null());
    cmd
}

fn run(socket: &Path, args: &[&str]) -> Output {
    zeta(socket, args).output().expect("run zeta")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(out.status.success(), "zeta failed ({}):\n{}\n{}", out.status, text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// The one-line error of a failed run, with its exit code.
#[track_caller]
fn failed(out: &Output) -> (i32, String) {
    assert!(!out.status.success(), "zeta should have failed:\n{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("zeta: "), "{err}");
    (out.status.code().unwrap_or(-1), err)
}

#[test]
fn no_daemon_exits_non_zero_with_the_hint() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.sock");
    let commands: [&[&str]; 8] = [
        &["models"],
        &["ps"],
        &["status"],
        &["load", "smollm2-135m"],
        &["unload", "smollm2-135m"],
        &["tokens", "smollm2-135m", "hi"],
        &["run", "smollm2-135m", "hi"],
        &["run", "smollm2-135m"],
    ];
    for args in commands {
        let out = run(&missing, args);
        let (code, err) = failed(&out);
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(err.contains(&missing.display().to_string()), "{args:?}: {err}");
        assert!(err.contains("not running"), "{err}");
        assert!(err.contains(&format!("zeta-mlxd --socket {}", missing.display())), "{err}");
        assert!(err.contains("zeta service install") && err.contains("make run"), "{err}");
    }

    // A socket file left behind by a daemon that died: nothing accepts on it.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let (code, err) = failed(&run(&stale, &["models"]));
    assert_eq!(code, 3);
    assert!(err.contains("nothing accepts connections") && err.contains("zeta-mlxd"), "{err}");

    // The path from the environment is named with where it came from.
    let out = Command::new(bin("zeta"))
        .arg("status")
        .env("ZETA_MLX_SOCKET", &missing)
        .env_remove("ZETA_MLX_CONFIG")
        .output()
        .unwrap();
    let (code, err) = failed(&out);
    assert_eq!(code, 3);
    assert!(err.contains("from ZETA_MLX_SOCKET") && err.contains(&missing.display().to_string()), "{err}");

    // A config file asked for that is missing or unusable is said so: a typo in its name must
    // not send zeta to the default socket (another daemon's, perhaps) without a word.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "socket = 5\n").unwrap();
    for (config, needle) in [(dir.path().join("typo.toml"), "does not exist"), (bad, "cannot be used")] {
        let out = Command::new(bin("zeta"))
            .arg("--config")
            .arg(&config)
            .arg("status")
            .env_remove("ZETA_MLX_SOCKET")
            .env_remove("ZETA_MLX_CONFIG")
            .output()
            .unwrap();
        let (_, err) = failed(&out);
        assert!(err.contains(needle) && err.contains("--config"), "{err}");
    }
}

/// The prompt-token counts of each answer, from `--verbose`'s lines on standard error.
fn prompt_tokens(stderr: &str) -> Vec<u32> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("[prompt "))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn against_the_real_daemon() {
    let config = tiny_config("max_loaded = 3", &[("tiny", "llama-f32"), ("tiny-too", "llama-f32")])
        + "[models.tiny-too.defaults]\nmax_tokens = 3\n";
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let s = d.socket.as_path();

    // models: configured and loaded, with state and source.
    let models = ok(&run(s, &["models"]));
    let row = |id: &str| {
        models
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id} not listed:\n{models}"))
            .to_owned()
    };
    assert!(row("smollm2-135m").contains(" loaded ") && row("smollm2-135m").ends_with(".gguf"), "{models}");
    assert!(row("tiny").contains(" unloaded "), "{models}");
    assert!(models.contains("default: smollm2-135m"), "{models}");
    // Output into a pipe whose reader left (`zeta models | head -0`): a quiet stop, as a shell
    // reports a SIGPIPE death, not an error message.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = zeta(s, &["models"]).stdout(writer).stderr(Stdio::piped()).output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");

    // run: the answer streams token by token to standard output.
    let started = Instant::now();
    let mut child = zeta(s, &["run", "smollm2-135m", "What is the capital of France?", "--temperature", "0"])
        .args(["--max-tokens", "24"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut chunks = 0;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        chunks += 1;
        answer.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().unwrap();
    let answer = text(&answer);
    assert!(status.success(), "{answer}");
    assert!(answer.contains("Paris"), "{answer}");
    assert!(chunks >= 2, "the answer arrived in {chunks} piece(s), not as tokens: {answer:?}");
    eprintln!("zeta run: {:.2} s, {chunks} chunks", started.elapsed().as_secs_f64());

    // Output that cannot be written (a full disk) is a one-line failure, not a panic.
    let full_disk = if Path::new("/dev/full").exists() {
        &[&["status"][..], &["models"], &["tokens", "smollm2-135m", "hi", "--ids"], &["--help"]][..]
    } else {
        &[]
    };
    for args in full_disk {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = zeta(s, args).stdout(full).output().unwrap();
        let (code, err) = failed(&out);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("No space left"), "{args:?}: {err}");
    }

    // Standard input that is not text is the caller's mistake (exit 2), for every command.
    let mut child = zeta(s, &["tokens", "default"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\xff").unwrap();
    let (code, err) = failed(&child.wait_with_output().unwrap());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("standard input is not UTF-8 text"), "{err}");

    // `default` names the default model in every command, as in `zeta run`.
    let named = ok(&run(s, &["tokens", "smollm2-135m", "Hello"]));
    assert_eq!(ok(&run(s, &["tokens", "default", "Hello"])), named);
    assert!(named.starts_with("1 token ("), "{named}");
    assert!(ok(&run(s, &["load", "default"])).starts_with("loaded smollm2-135m"));
    // tokens: the count and ids the daemon's Tokenize gives.
    let out = ok(&run(s, &["tokens", "smollm2-135m", "Hello world, how are you?", "--ids"]));
    let want = d
        .models()
        .await
        .tokenize(v1::TokenizeRequest {
            model: "smollm2-135m".into(),
            input: Some(v1::tokenize_request::Input::Text("Hello world, how are you?".into())),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap().split_whitespace().next().unwrap(), want.count.to_string(), "{out}");
    let ids: Vec<u32> = lines.next().unwrap().split_whitespace().map(|i| i.parse().unwrap()).collect();
    assert_eq!(ids, want.ids, "{out}");
    // --tokens: each token as it reads (joined, the text again), the vocabulary's spelling after
    // it where that differs (SmolLM2's byte-level BPE writes a space as `Ġ`).
    let out = ok(&run(s, &["tokens", "smollm2-135m", "Hello world, how are you?", "--tokens"]));
    let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), want.ids.len(), "{out}");
    let joined: String =
        rows.iter().map(|r| r[1].strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap()).collect();
    assert_eq!(joined, "Hello world, how are you?", "{out}");
    assert!(rows.iter().any(|r| r.len() == 3 && r[2] == "Ġworld" && r[1] == "\" world\""), "{out}");

    // load: progress as plain lines (standard error is not a terminal), then what was loaded.
    let out = run(s, &["load", "tiny"]);
    let stdout = ok(&out);
    assert!(stdout.starts_with("loaded tiny: llama"), "{stdout}");
    let progress = text(&out.stderr);
    assert!(progress.lines().any(|l| l.starts_with("tiny: loading layers")), "{progress}");
    let ps = ok(&run(s, &["ps"]));
    assert!(ps.lines().any(|l| l.starts_with("tiny ")), "{ps}");
    assert!(ps.lines().any(|l| l.starts_with("smollm2-135m ")), "{ps}");
    assert!(ps.contains("MLX memory"), "{ps}");
    // A second name of the same file shares the engine, and its row.
    ok(&run(s, &["load", "tiny-too"]));
    // An answer cut by the model's own cap does not blame a --max-tokens that was never given.
    let out = run(s, &["run", "tiny-too", "hello", "--temperature", "0"]);
    ok(&out);
    assert!(text(&out.stderr).contains("stopped at the model's token limit"), "{}", text(&out.stderr));
    let out = run(s, &["run", "tiny-too", "hello", "--temperature", "0", "--max-tokens", "2"]);
    ok(&out);
    assert!(text(&out.stderr).contains("raise --max-tokens"), "{}", text(&out.stderr));
    let ps = ok(&run(s, &["ps"]));
    assert!(ps.lines().any(|l| l.starts_with("tiny, tiny-too ")), "{ps}");
    assert!(!ps.lines().any(|l| l.starts_with("tiny-too")), "{ps}");
    assert_eq!(ok(&run(s, &["unload", "tiny-too"])).trim(), "unloaded tiny-too");
    let listed = d.models().await.list_models(v1::ListModelsRequest {}).await.unwrap().into_inner();
    let state = |l: &v1::ListModelsResponse| l.models.iter().find(|m| m.id == "tiny").unwrap().state;
    assert_eq!(state(&listed), v1::ModelState::Loaded as i32);

    // unload, twice.
    assert_eq!(ok(&run(s, &["unload", "tiny"])).trim(), "unloaded tiny");
    assert_eq!(ok(&run(s, &["unload", "tiny"])).trim(), "tiny was not loaded");
    let listed = d.models().await.list_models(v1::ListModelsRequest {}).await.unwrap().into_inner();
    assert_eq!(state(&listed), v1::ModelState::Unloaded as i32);

    // Refused requests: one line each, exit status 1.
    let (code, err) = failed(&run(s, &["load", "no-such-model"]));
    assert_eq!(code, 1);
    assert!(err.contains("no-such-model") && err.contains("does not exist"), "{err}");
    let (code, err) = failed(&run(s, &["run", "smollm2-135m", "hi", "--temperature", "-1"]));
    assert_eq!(code, 1);
    assert!(err.contains("temperature"), "{err}");

    // An interactive chat keeps the history: the second turn's prompt holds the first exchange.
    let mut child = zeta(s, &["run", "smollm2-135m", "-i", "-v", "--temperature", "0", "--max-tokens", "12"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Between the turns, one line too long for the context and one that is not UTF-8: each is
    // reported and dropped, and the conversation goes on.
    let mut input = b"My name is Ada.\n\n/help\n".to_vec();
    input.extend("tell me more ".repeat(3000).as_bytes());
    input.extend(b"\nab\xffcd\nWhat is my name?\n/bye\n");
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    ok(&out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("zeta: too long") && stderr.contains("not UTF-8 text (line skipped)"), "{stderr}");
    assert!(stderr.contains("/clear forgets it"), "a turn refused as too long after some history: {stderr}");
    let counts = prompt_tokens(&stderr);
    assert_eq!(counts.len(), 2, "{}", text(&out.stderr));
    // Without history the second prompt would be about as long as the first.
    assert!(counts[1] >= counts[0] + 8, "history not kept: prompts of {counts:?} tokens");

    // Ctrl-C before the first token (the daemon stopped here, as a model loading would be) ends
    // the command at once, with the status a shell gives an interrupted command.
    d.signal(libc::SIGSTOP);
    let mut child = zeta(s, &["run", "tiny", "hello"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: kill on our child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(t0.elapsed().as_secs() < 5, "zeta run ignored Ctrl-C before the first token");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    d.signal(libc::SIGCONT);
    assert_eq!(status.code(), Some(130));

    // In a chat, a question stopped before a word of its answer showed is dropped: the next
    // prompt holds the next question alone.
    let alone: u32 = ok(&run(s, &["tokens", "tiny", "What is my name?", "--chat"]))
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap();
    let mut child = zeta(s, &["run", "tiny", "-i", "-v", "--max-tokens", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    d.signal(libc::SIGSTOP);
    stdin.write_all(b"My name is Ada.\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    // SAFETY: kill on our child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::thread::sleep(std::time::Duration::from_millis(300));
    d.signal(libc::SIGCONT);
    stdin.write_all(b"What is my name?\n/bye\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success() && stderr.contains("the question is dropped"), "{stderr}");
    assert_eq!(prompt_tokens(&stderr), vec![alone], "{stderr}");

    // status.
    let status = ok(&run(s, &["status"]));
    assert!(status.contains("state: ready") && status.contains(&s.display().to_string()), "{status}");

    // Unloading a model a request still runs on says so: its memory is not free yet.
    let mut client = d.generation().await;
    let mut stream =
        client.generate(zeta_tests::chat("smollm2-135m", "Tell me a long story.", 400)).await.unwrap().into_inner();
    while d.status().await.engines.iter().all(|e| e.active == 0) {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let out = ok(&run(s, &["unload", "smollm2-135m", "--force"]));
    assert!(out.starts_with("unloading smollm2-135m: 1 request still running"), "{out}");
    drop(stream.message().await);
}

/// `zeta-chat`, the engine-only terminal chat, driven through a pipe as a person types.
#[test]
fn zeta_chat_keeps_the_conversation_through_stops_commands_and_refusals() {
    let model = zeta_tests::tiny("llama-f32");
    let chat = |args: &[&str]| {
        let mut cmd = Command::new(bin("zeta-chat"));
        cmd.arg("--model").arg(&model).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    };
    // Bad arguments are refused before the model loads, as clap refuses any (exit 2).
    for bad in [&["--temperature", "-1"][..], &["--temperature", "nan"], &["--max-tokens", "0"], &[""]] {
        let out = chat(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
        assert!(!text(&out.stderr).contains("loading"), "{bad:?}: {}", text(&out.stderr));
    }
    // Commands are not sent to the model; a line too long for the context (512 tokens) is
    // reported and dropped; a line that is not UTF-8 is skipped; the chat goes on to the end.
    let mut child = chat(&["--max-tokens", "3", "--temperature", "0"]).spawn().unwrap();
    let mut input = b"/help\n/nosuch\n\nhello\n".to_vec();
    input.extend("tell me more ".repeat(600).as_bytes());
    input.extend(b"\nab\xffcd\nhello again\n/bye\n");
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("/bye quits") && err.contains("unknown command '/nosuch'"), "{err}");
    assert!(err.contains("the context of model 'llama-f32'") && err.contains("/clear forgets it"), "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
    assert_eq!(err.matches(" prompt tokens (").count(), 2, "two answered turns: {err}");

    // Ctrl-C during an answer stops the answer, not the chat.
    let mut child = chat(&["--max-tokens", "400", "--temperature", "1", "--seed", "1"]).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin.write_all(b"tell me a long story\n").unwrap();
    // The prompt marker, then the answer's first bytes.
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while seen.len() < 8 {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "zeta-chat ended before answering: {}", text(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // SAFETY: kill on our child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    stdin.write_all(b"/bye\n").unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "Ctrl-C during an answer ended zeta-chat ({}): {err}", out.status);
    assert!(err.contains("(answer stopped"), "{err}");

    // At the prompt, Ctrl-C quits as an interrupted command does.
    let mut child = chat(&[]).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut b = [0u8; 2];
    stdout.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"> ");
    // SAFETY: kill on our child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
}
