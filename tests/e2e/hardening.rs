//! Hostile and careless clients against the real gateway and daemon: every bad request gets
//! its 4xx in OpenAI's envelope while another client's stream, sharing the gateway's one
//! connection to the daemon, completes untouched; model references cannot make the daemon open
//! files or download for an HTTP client; browser requests from foreign origins or under foreign
//! host names are refused; slow clients are cut off; the pinned default model stays loaded;
//! what clients send is logged escaped; a client that goes away is logged as cancelled by both.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeta_proto::v1;
use zeta_tests::{Daemon, Gateway, http, tiny_config};

const JSON: (&str, &str) = ("content-type", "application/json");

fn chat(model: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}))
        .unwrap()
}

/// A model name that would write a line of its own, and a terminal escape, into a log that did
/// not escape what clients send.
const FORGED: &str = "nope\n2026-12-02T18:40:00.000000Z ERROR zeta_mlxd: FORGED LINE \u{1b}[31mRED";

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

/// Streams chat completions one after another until told to stop; each must end well.
fn healthy_streams(addr: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let req = body(json!({"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 48,
            "stream": true, "temperature": 0}));
        let mut done = 0;
        while !stop.load(Ordering::Relaxed) || done == 0 {
            let r = http(&addr, "POST", "/v1/chat/completions", &[JSON], &req).await.expect("healthy request");
            let text = r.text();
            assert_eq!(r.status, 200, "{text}");
            assert!(!text.contains("\"error\""), "the healthy stream got an error: {text}");
            assert!(text.trim_end().ends_with("data: [DONE]"), "the healthy stream did not finish: {text}");
            assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
            done += 1;
        }
        done
    })
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: Option<&'static str>,
    param: Option<&'static str>,
}

fn case(name: &'static str, method: &'static str, path: &str, body: Vec<u8>, status: u16) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        headers: vec![("content-type", "application/json".into())],
        body,
        status,
        code: None,
        param: None,
    }
}

impl Case {
    fn code(mut self, c: &'static str) -> Self {
        self.code = Some(c);
        self
    }
    fn param(mut self, p: &'static str) -> Self {
        self.param = Some(p);
        self
    }
    fn header(mut self, k: &'static str, v: &str) -> Self {
        self.headers.retain(|(name, _)| *name != k);
        self.headers.push((k, v.into()));
        self
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_enveloped_errors_and_never_touch_another_clients_stream() {
    let config = tiny_config("default_model = \"tiny\"", &[("tiny", "qwen2-f32")]);
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    // Written as a person copies it from the address bar: with its port and in capitals.
    let g = Gateway::start(&d.socket, &["--allowed-host", "Box.LAN:8000"]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let healthy = healthy_streams(g.addr.clone(), stop.clone());

    let cases = vec![
        case("20 KB model name", "POST", "/v1/chat/completions", chat(&"m".repeat(20_000)), 400).param("model"),
        case("3000 × é model name", "POST", "/v1/chat/completions", chat(&"é".repeat(3000)), 400).param("model"),
        case("100 KB model name", "POST", "/v1/chat/completions", chat(&"m".repeat(100_000)), 400).param("model"),
        case(
            "100 KB name to count",
            "POST",
            "/v1/tokens/count",
            body(json!({"model": "m".repeat(100_000), "text": "x"})),
            400,
        )
        .param("model"),
        case("/etc/passwd", "POST", "/v1/chat/completions", chat("/etc/passwd"), 400).code("invalid_model"),
        case("../../etc/shadow", "POST", "/v1/chat/completions", chat("../../etc/shadow"), 400).code("invalid_model"),
        case("/dev/null", "POST", "/v1/chat/completions", chat("/dev/null"), 400).code("invalid_model"),
        case("./Cargo.toml", "POST", "/v1/chat/completions", chat("./Cargo.toml"), 400).code("invalid_model"),
        case("a missing path", "POST", "/v1/chat/completions", chat("/no/such/model.gguf"), 400).code("invalid_model"),
        case("load a path", "POST", "/v1/models/%2Fetc%2Fpasswd/load", vec![], 400).code("invalid_model"),
        case("count on a path", "POST", "/v1/tokens/count", body(json!({"model": "/etc/passwd", "text": "x"})), 400)
            .code("invalid_model"),
        case("tokenize on a path", "POST", "/v1/tokenize", body(json!({"model": "/etc/passwd", "text": "x"})), 400)
            .code("invalid_model"),
        case(
            "a tool result of no call",
            "POST",
            "/v1/chat/completions",
            body(json!({"messages": [{"role": "user", "content": "Hi"},
                {"role": "tool", "tool_call_id": "call_9", "content": "18"}], "max_tokens": 2})),
            400,
        )
        .param("messages[1].tool_call_id"),
        case(
            "tools with a text to tokenize",
            "POST",
            "/v1/tokenize",
            body(json!({"text": "x", "tools": [{"type": "function", "function": {"name": "f"}}]})),
            400,
        )
        .param("tools"),
        case("a hub id over HTTP", "POST", "/v1/chat/completions", chat("some-org/some-model"), 404)
            .code("model_not_found"),
        case(
            "token id over u32",
            "POST",
            "/v1/completions",
            body(json!({"model": "tiny", "prompt": [4294967297u64]})),
            400,
        )
        .param("prompt[0]"),
        case(
            "token id over the vocabulary",
            "POST",
            "/v1/completions",
            body(json!({"model": "tiny", "prompt": [1, 10_000_000]})),
            400,
        )
        .param("prompt[1]"),
        case("negative token id", "POST", "/v1/completions", body(json!({"model": "tiny", "prompt": [-1]})), 400)
            .param("prompt[0]"),
        case("invalid UTF-8 in a path", "GET", "/v1/models/%FF", vec![], 400),
        case("GET on a POST route", "GET", "/v1/chat/completions", vec![], 405).code("method_not_allowed"),
        case("DELETE a model", "DELETE", "/v1/models/x", vec![], 405).code("method_not_allowed"),
        case("PUT /health", "PUT", "/health", vec![], 405).code("method_not_allowed"),
        case("JSON sent as text/plain", "POST", "/v1/chat/completions", chat("tiny"), 415)
            .header("content-type", "text/plain")
            .code("unsupported_media_type"),
        case("no content type", "POST", "/v1/tokenize", body(json!({"text": "x"})), 415)
            .header("content-type", "")
            .code("unsupported_media_type"),
        case("a response as form data", "POST", "/v1/responses", body(json!({"model": "tiny", "input": "x"})), 415)
            .header("content-type", "application/x-www-form-urlencoded")
            .code("unsupported_media_type"),
        case("embeddings as text", "POST", "/v1/embeddings", body(json!({"model": "tiny", "input": "x"})), 415)
            .header("content-type", "text/plain")
            .code("unsupported_media_type"),
        case("a gzip body", "POST", "/v1/chat/completions", chat("tiny"), 415)
            .header("content-encoding", "gzip")
            .code("unsupported_media_type"),
        case(
            "a tool declared twice",
            "POST",
            "/v1/chat/completions",
            body(json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "tools": [
                {"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}]})),
            400,
        )
        .param("tools[1].function.name"),
        case("a rebound host name", "POST", "/v1/chat/completions", chat("tiny"), 403)
            .header("host", "attacker.example:8000")
            .code("host_not_allowed"),
        case("a similar host name", "POST", "/v1/chat/completions", chat("tiny"), 403)
            .header("host", "box.lan.attacker.example:8000")
            .code("host_not_allowed"),
        case("a foreign web page", "POST", "/v1/chat/completions", chat("tiny"), 403)
            .header("origin", "https://attacker.example")
            .code("origin_not_allowed"),
        case("a web page unloading a model", "POST", "/v1/models/tiny/unload", vec![], 403)
            .header("origin", "null")
            .code("origin_not_allowed"),
        case("unload the pinned default", "POST", "/v1/models/tiny/unload", vec![], 409).code("model_pinned"),
        // A name is taken as written: blanks around it make another name, not a second spelling.
        case("a padded model name", "POST", "/v1/chat/completions", chat(" tiny "), 404).code("model_not_found"),
        case("a model name that forges a log line", "POST", "/v1/chat/completions", chat(FORGED), 404)
            .code("model_not_found"),
        case(
            "an empty stop string",
            "POST",
            "/v1/chat/completions",
            body(json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stop": ""})),
            400,
        )
        .param("stop"),
        case(
            "a stop string past its byte limit",
            "POST",
            "/v1/chat/completions",
            body(json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stop": ["ok", "x".repeat(1025)]})),
            400,
        )
        .param("stop[1]"),
        case(
            "an Anthropic stop sequence past its byte limit",
            "POST",
            "/v1/messages",
            body(json!({"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "x"}],
                "stop_sequences": ["x".repeat(1025)]})),
            400,
        ),
        // Errors the daemon finds name the field as each API calls it.
        case(
            "a completion prompt over the context",
            "POST",
            "/v1/completions",
            body(json!({"model": "tiny", "prompt": vec![5; 600], "max_tokens": 1})),
            400,
        )
        .code("context_length_exceeded")
        .param("prompt"),
        case(
            "a response input over the context",
            "POST",
            "/v1/responses",
            body(json!({"model": "tiny", "input": "word ".repeat(600), "max_output_tokens": 16})),
            400,
        )
        .code("context_length_exceeded")
        .param("input"),
        case(
            "a grammar that does not compile",
            "POST",
            "/v1/chat/completions",
            body(json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "grammar": "start: ((("})),
            400,
        )
        .param("grammar"),
    ];
    let mut messages = std::collections::HashMap::new();
    for c in cases {
        let headers: Vec<(&str, &str)> =
            c.headers.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (*k, v.as_str())).collect();
        // The harness sends its own Host; a case with one is sent raw.
        let r = if c.headers.iter().any(|(k, _)| *k == "host") {
            raw_with_host(&g.addr, c.method, &c.path, &c.headers, &c.body).await
        } else {
            http(&g.addr, c.method, &c.path, &headers, &c.body).await.unwrap()
        };
        assert_eq!(r.status, c.status, "{}: {}", c.name, r.text());
        let e = r.json();
        let err = e.get("error").unwrap_or_else(|| panic!("{}: no error envelope: {e}", c.name));
        let message = err["message"].as_str().unwrap_or_else(|| panic!("{}: no message: {e}", c.name));
        assert!(!message.is_empty() && message.len() <= 2048, "{}: {message}", c.name);
        assert!(err["type"].is_string(), "{}: {e}", c.name);
        if let Some(code) = c.code {
            assert_eq!(err["code"], code, "{}: {e}", c.name);
        }
        if let Some(p) = c.param {
            assert_eq!(err["param"], p, "{}: {e}", c.name);
        }
        messages.insert(c.name, message.to_string());
    }
    // The allowed name is answered however its Host header spells it.
    for host in ["box.lan:9000", "BOX.lan.", "box.lan"] {
        let r = raw_with_host(&g.addr, "GET", "/v1/models", &[("host", host.to_string())], &[]).await;
        assert_eq!(r.status, 200, "Host {host}: {}", r.text());
    }
    // No existence oracle: files that exist and one that does not get the same answer.
    let same = |case: &str, path: &str| messages[case].replace(path, "PATH");
    let missing = same("a missing path", "/no/such/model.gguf");
    assert_eq!(same("/etc/passwd", "/etc/passwd"), missing);
    assert_eq!(same("/dev/null", "/dev/null"), missing);
    assert!(!missing.contains("gguf") && !missing.contains("No such file"), "{missing}");
    assert!(messages["a hub id over HTTP"].contains("http_allow_hub_models"), "{}", messages["a hub id over HTTP"]);
    // Anthropic's envelope has no param: the message names the field in its own API's words.
    let anthropic_stop = &messages["an Anthropic stop sequence past its byte limit"];
    assert!(anthropic_stop.starts_with("stop_sequences[0]: "), "{anthropic_stop}");

    stop.store(true, Ordering::Relaxed);
    let streams = healthy.await.expect("the healthy client's streams all completed");
    assert!(streams >= 1);
    let h = g.request("GET", "/health", b"").await;
    assert_eq!(h.status, 200, "the pinned default stays loaded: {}", h.text());
    for (who, log) in [("daemon", d.logs()), ("gateway", g.logs())] {
        assert!(!log.contains("panicked"), "{who}:\n{log}");
        // What a client sent is logged escaped: no line of its making, no terminal escapes.
        assert!(!log.lines().any(|l| l.starts_with("2026-12-02T18:40:00")), "{who} logged a forged line:\n{log}");
        assert!(!log.contains('\u{1b}'), "{who} logged a terminal escape:\n{log}");
        let longest = log.lines().map(str::len).max().unwrap_or(0);
        assert!(longest < 8192, "{who} logged a {longest}-byte line: user strings are not bounded");
    }
    // The socket's owner may still unload the default, deliberately.
    let mut m = d.models().await;
    let e = m.unload_model(v1::UnloadModelRequest { model: "tiny".into(), force: false }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let r = m.unload_model(v1::UnloadModelRequest { model: "tiny".into(), force: true }).await.unwrap();
    assert!(r.into_inner().was_loaded);
}

/// A request whose `Host` header is exactly the case's.
async fn raw_with_host(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> zeta_tests::HttpResponse {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    zeta_tests::parse_response(&raw).expect("a response")
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_and_hub_ids_stay_with_the_socket_owner_unless_configured() {
    let model = zeta_tests::tiny("llama-f32");
    let path = model.display().to_string();
    // Default: the socket's owner may name a path, an HTTP client may not.
    let d = Daemon::builder().config("preload_default = false").start().await;
    let g = Gateway::start(&d.socket, &[]).await;
    let r = g.request("POST", "/v1/chat/completions", &chat(&path)).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some("invalid_model")), "{}", r.text());
    let mut client = d.generation().await;
    let events = zeta_tests::generate(&mut client, zeta_tests::chat(&path, "Hi", 2)).await;
    assert!(events.is_ok(), "the socket's owner names a path: {events:?}");
    let rel = zeta_tests::generate(&mut client, zeta_tests::chat("./target/tmp/models/tiny/llama-f32", "Hi", 2)).await;
    let e = rel.expect_err("a relative path");
    assert!(e.code() == tonic::Code::InvalidArgument && e.message().contains("absolute"), "{e:?}");
    drop((g, d));
    // Configured: HTTP clients too.
    let d = Daemon::builder().config("preload_default = false\nhttp_allow_path_models = true").start().await;
    let g = Gateway::start(&d.socket, &[]).await;
    let r = g.request("POST", "/v1/chat/completions", &chat(&path)).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_and_connections_are_limited() {
    let config = tiny_config("preload_default = false", &[("tiny", "qwen2-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let g = Gateway::start(&d.socket, &["--header-timeout", "1", "--body-timeout", "1"]).await;

    // Slowloris: headers that never end.
    let mut s = tokio::net::TcpStream::connect(&g.addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: 1\r\n").await.unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a connection with unfinished headers was held open for 15 s");
    assert!(start.elapsed() >= Duration::from_millis(500), "closed before the timeout: {:?}", start.elapsed());
    // And a connection that never sends a byte, which would otherwise hold its slot for ever.
    let mut s = tokio::net::TcpStream::connect(&g.addr).await.unwrap();
    let start = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a silent connection was held open for 15 s");
    assert!(start.elapsed() >= Duration::from_millis(500), "closed before the timeout: {:?}", start.elapsed());
    // One byte that could begin an HTTP/2 preface, and the preface itself: each held open while
    // hyper waited to tell the protocol, with no timeout at all (HTTP/2 is not served).
    for start_of in [&b"P"[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"] {
        let mut s = tokio::net::TcpStream::connect(&g.addr).await.unwrap();
        s.write_all(start_of).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "{:?} then silence was held open for 15 s", String::from_utf8_lossy(start_of));
    }

    // Bodies that stall: with a length, and chunked.
    for (head, part) in [
        ("content-length: 100\r\n", &b"{\"model\":"[..]),
        ("transfer-encoding: chunked\r\n", &b"9\r\n{\"model\":\r\n"[..]),
    ] {
        let mut s = tokio::net::TcpStream::connect(&g.addr).await.unwrap();
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{head}\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        s.write_all(part).await.unwrap();
        let mut raw = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut raw)).await.expect("an answer").unwrap();
        let r = zeta_tests::parse_response(&raw[..n]).expect("a response");
        assert_eq!(r.status, 408, "{head}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "request_timeout", "{}", r.text());
    }
    drop(g);

    // A connection limit: the one over it gets a 503 in the envelope, and room comes back.
    let g = Gateway::start(&d.socket, &["--max-connections", "2", "--header-timeout", "20"]).await;
    let held = hold(&g.addr, 2).await;
    let r = http(&g.addr, "GET", "/v1/models", &[], b"").await.unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "too_many_connections");
    assert!(r.header("retry-after").is_some());
    drop(held);
    let start = Instant::now();
    loop {
        let r = http(&g.addr, "GET", "/v1/models", &[], b"").await.unwrap();
        if r.status == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no room after the held connections closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` idle connections the gateway has taken. A connection it took stays silent; one it refused
/// (while the start-up probe's connection was still closing) hears a 503 and is replaced.
async fn hold(addr: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < n {
        assert!(start.elapsed() < Duration::from_secs(20), "could not hold {n} connections");
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(300), c.read(&mut b)).await.is_err() {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_prompt_is_processed_off_the_async_threads() {
    let config = tiny_config("default_model = \"tiny\"", &[("tiny", "qwen2-f32")]);
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let g = Gateway::start(&d.socket, &[]).await;
    let rss = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let before = rss(d.pid());
    // Two at once, a text and a conversation (template rendering too): as many as the
    // daemon's async threads on this machine, so work left on them would stall everything.
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(8 << 20 >> 6);
    let chat = body(json!({"messages": [{"role": "user", "content": &text[..4 << 20]}]}));
    let req = body(json!({"text": text}));
    let addr = g.addr.clone();
    let counting = tokio::spawn(async move { http(&addr, "POST", "/v1/tokens/count", &[JSON], &req).await });
    let addr = g.addr.clone();
    let rendering = tokio::spawn(async move { http(&addr, "POST", "/v1/tokens/count", &[JSON], &chat).await });
    let mut slowest = Duration::ZERO;
    while !counting.is_finished() || !rendering.is_finished() {
        let t = Instant::now();
        let h = g.request("GET", "/health", b"").await;
        assert_eq!(h.status, 200, "{}", h.text());
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = rendering.await.unwrap().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = counting.await.unwrap().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["count"].as_u64().unwrap() > 1_000_000, "{v}");
    assert!(v.get("ids").is_none(), "a count ships no ids");
    eprintln!("health answered within {slowest:?} at worst while 8 MB were tokenized");
    // A generous bound for a noisy shared machine: tokenizing takes seconds; a health check
    // stuck behind it would take as long.
    assert!(slowest < Duration::from_secs(1), "health waited {slowest:?} behind the tokenizer");
    if before > 0 {
        let after = rss(d.pid());
        eprintln!("daemon RSS {} MB before, {} MB after", before >> 20, after >> 20);
        assert!(after < before + before / 4 + (64 << 20), "memory stayed high: {before} -> {after} bytes");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_in_flight_when_the_daemon_dies_get_a_clear_503_and_new_ones_reconnect() {
    let config = tiny_config("preload_default = false", &[("tiny", "qwen2-f32")]);
    let mut d = Daemon::builder().config(&config).start().await;
    let g = Gateway::start(&d.socket, &[]).await;
    // Long answers: the tiny model's end-of-text tokens are biased away.
    let long = |stream: bool| {
        body(json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}],
            "stream": stream, "logit_bias": {"450": -100, "452": -100}}))
    };
    let (a1, a2) = (g.addr.clone(), g.addr.clone());
    let (b1, b2) = (long(false), long(true));
    let json_req = tokio::spawn(async move { http(&a1, "POST", "/v1/chat/completions", &[JSON], &b1).await });
    let sse_req = tokio::spawn(async move { http(&a2, "POST", "/v1/chat/completions", &[JSON], &b2).await });
    let start = Instant::now();
    while d.status().await.engines.first().is_none_or(|e| e.active < 2) {
        assert!(start.elapsed() < Duration::from_secs(30), "the two requests never ran together");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.signal(libc::SIGKILL);
    let r = json_req.await.unwrap().unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "daemon_unavailable", "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let r = sse_req.await.unwrap().unwrap();
    let text = r.text();
    let last = text.split("\n\n").filter(|e| !e.trim().is_empty()).last().unwrap_or("");
    assert!(last.contains("\"daemon_unavailable\""), "the stream ends with the error event: {last}");

    d.wait_exit(Duration::from_secs(10));
    let log = d.dir.path().join("daemon2.log");
    let _restarted = KillOnDrop(zeta_tests::spawn_daemon(&d.config, &d.socket, &log, &[]));
    let start = Instant::now();
    loop {
        let r = g.request("POST", "/v1/chat/completions", &chat("tiny")).await;
        if r.status == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no recovery: {}", r.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A socket that accepts connections and never answers: a daemon stuck before its answer (as in
/// a long model load), without having to make one slow.
fn silent_socket(path: &std::path::Path) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_waiting_on_the_daemon_gets_keep_alives_then_times_out() {
    let dir = tempfile::Builder::new().prefix("zeta-silent-").tempdir_in("/tmp").unwrap();
    let socket = dir.path().join("zeta.sock");
    let _silent = silent_socket(&socket);
    let g = Gateway::start(&socket, &["--request-timeout", "3", "--sse-keep-alive-ms", "200"]).await;
    let req = |stream: bool| body(json!({"messages": [{"role": "user", "content": "Hi"}], "stream": stream}));

    // A stream starts after a second and keeps the connection alive, then ends with the timeout
    // as its error event.
    let start = Instant::now();
    let r = http(&g.addr, "POST", "/v1/chat/completions", &[JSON], &req(true)).await.unwrap();
    let took = start.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.matches(": keep-alive").count() >= 3, "keep-alives while waiting:\n{text}");
    assert!(text.contains("\"code\":\"timeout\""), "the stream ends with the timeout:\n{text}");
    assert!((Duration::from_secs(2)..Duration::from_secs(15)).contains(&took), "{took:?}");

    // A JSON request gets a 504 within the limit, model wait included.
    let start = Instant::now();
    let r = http(&g.addr, "POST", "/v1/chat/completions", &[JSON], &req(false)).await.unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "timeout");
    assert!(start.elapsed() < Duration::from_secs(15), "{:?}", start.elapsed());
}

/// Sends a chat request on a connection of its own and closes it: once `after` has arrived
/// (a stream's first chunks), or after `wait` (a JSON answer still being generated).
async fn ask_and_leave(addr: &str, req: &[u8], after: Option<&str>, wait: Duration) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        req.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(req).await.unwrap();
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < wait {
        if let Some(marker) = after
            && String::from_utf8_lossy(&seen).matches(marker).count() >= 3
        {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("the gateway closed first: {}", String::from_utf8_lossy(&seen)),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => {}
        }
    }
    assert!(
        !String::from_utf8_lossy(&seen).contains("[DONE]") && !String::from_utf8_lossy(&seen).contains("\"usage\""),
        "the generation ended before the client left; the test needs a longer one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_is_logged_as_cancelled_at_both_ends() {
    // The embedded SmolLM2, kept from ending its answer: thousands of tokens, far longer than
    // the test waits.
    let d = Daemon::builder().wait_ready().start().await;
    let g = Gateway::start(&d.socket, &[]).await;
    let long = |stream: bool| {
        body(json!({"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 4000,
            "stream": stream, "logit_bias": {"0": -100, "2": -100}}))
    };
    ask_and_leave(&g.addr, &long(true), Some("data: "), Duration::from_secs(60)).await;
    ask_and_leave(&g.addr, &long(false), None, Duration::from_millis(1500)).await;

    let start = Instant::now();
    loop {
        let (daemon, gateway) = (d.logs(), g.logs());
        let cancelled = daemon.matches("cancelled: the client went away").count();
        let gone = gateway.lines().filter(|l| l.contains("status=499") && l.contains("client went away")).count();
        if cancelled == 2 && gone == 1 && d.status().await.engines[0].active == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "both generations end logged as cancelled by the daemon ({cancelled} of 2), the JSON one as 499 by the \
             gateway ({gone} of 1):\n--- daemon\n{daemon}\n--- gateway\n{gateway}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = g.request("GET", "/metrics", b"").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("zeta_gateway_requests_total{route=\"/v1/chat/completions\",status=\"499\"} 1")),
        "{metrics}"
    );
}
