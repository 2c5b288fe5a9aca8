//! The real gateway in front of the real daemon: a bad-input table answered with the right 4xx
//! and OpenAI's error body, raw SSE invariants and keep-alives, a client disconnect that frees
//! the daemon's slot, a daemon stopped and restarted under a running gateway, API keys and
//! metrics. The conformance suite with the official `openai` client is `openai_conformance`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zeta_tests::{Daemon, Gateway, tiny_config};

fn chat_body(model: &str, extra: Value) -> Vec<u8> {
    let mut v = json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 8, "temperature": 0});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_get_4xx_with_openai_bodies_and_the_daemon_keeps_serving() {
    let short =
        format!("[models.short]\npath = \"{}\"\ncontext_length = 32\n", zeta_tests::tiny("qwen2-f32").display());
    let config = tiny_config(&format!("preload_default = false\n{short}"), &[("tiny", "qwen2-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let g = Gateway::start(&d.socket, &["--body-limit", "65536"]).await;
    let big = vec![b'a'; 100_000];
    let cases: Vec<(&str, Vec<u8>, u16, Option<&str>)> = vec![
        ("malformed JSON", b"{\"model\": \"tiny\", ".to_vec(), 400, Some("body")),
        ("not an object", b"[1, 2]".to_vec(), 400, Some("body")),
        ("invalid UTF-8", b"{\"model\": \"\xff\xfe\"}".to_vec(), 400, Some("body")),
        ("NaN", b"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"temperature\": NaN}".to_vec(), 400, Some("body")),
        ("body over the limit", big, 413, None),
        ("no messages", br#"{"model": "tiny"}"#.to_vec(), 400, Some("messages")),
        ("empty messages", br#"{"model": "tiny", "messages": []}"#.to_vec(), 400, Some("messages")),
        ("messages not an array", br#"{"model": "tiny", "messages": "hi"}"#.to_vec(), 400, Some("messages")),
        ("unknown role", br#"{"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}"#.to_vec(), 400, Some("messages[0].role")),
        ("content wrong type", br#"{"model": "tiny", "messages": [{"role": "user", "content": 5}]}"#.to_vec(), 400, Some("messages[0].content")),
        ("image part", br#"{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}"#.to_vec(), 400, Some("messages[0].content[0].type")),
        ("temperature a string", chat_body("tiny", json!({"temperature": "hot"})), 400, Some("temperature")),
        ("temperature out of range", chat_body("tiny", json!({"temperature": 2.5})), 400, Some("temperature")),
        ("top_p zero", chat_body("tiny", json!({"top_p": 0})), 400, Some("top_p")),
        ("max_tokens negative", chat_body("tiny", json!({"max_tokens": -5})), 400, Some("max_tokens")),
        ("max_tokens fractional", chat_body("tiny", json!({"max_tokens": 2.5})), 400, Some("max_tokens")),
        ("presence_penalty huge", chat_body("tiny", json!({"presence_penalty": 1e9})), 400, Some("presence_penalty")),
        ("n=3", chat_body("tiny", json!({"n": 3})), 400, Some("n")),
        ("unknown response format", chat_body("tiny", json!({"response_format": {"type": "yaml"}})), 400, Some("response_format.type")),
        ("schema not an object", chat_body("tiny", json!({"response_format": {"type": "json_schema", "json_schema": {"schema": 5}}})), 400, Some("response_format.json_schema.schema")),
        ("stream_options without stream", chat_body("tiny", json!({"stream_options": {"include_usage": true}})), 400, Some("stream_options")),
        ("top_logprobs without logprobs", chat_body("tiny", json!({"top_logprobs": 2})), 400, Some("top_logprobs")),
        ("tool_choice without tools", chat_body("tiny", json!({"tool_choice": "required"})), 400, Some("tool_choice")),
        ("functions", chat_body("tiny", json!({"functions": [{"name": "f"}]})), 400, Some("functions")),
        ("unknown model", chat_body("nope", json!({})), 404, Some("model")),
        ("over the context", chat_body("tiny", json!({"max_tokens": 100000})), 400, Some("messages")),
        ("a name that is no string", br#"{"model": "tiny", "messages": [{"role": "user", "name": 5, "content": "x"}]}"#.to_vec(), 400, Some("messages[0].name")),
        (
            "an allowed_tools choice",
            chat_body("tiny", json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}})),
            400,
            Some("tool_choice.type"),
        ),
        ("a schema left out", chat_body("tiny", json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})), 400, Some("response_format.json_schema.schema")),
    ];
    for (name, body, status, param) in cases {
        let r = g.request("POST", "/v1/chat/completions", &body).await;
        assert_eq!(r.status, status, "{name}: {}", r.text());
        let e = r.json();
        let err = e.get("error").unwrap_or_else(|| panic!("{name}: no error envelope: {e}"));
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {e}");
        assert!(err["type"].is_string(), "{name}: {e}");
        if let Some(p) = param {
            assert_eq!(err["param"], p, "{name}: {e}");
            // Many clients show only the message: one that says what is wrong names what it is.
            let m = err["message"].as_str().unwrap();
            assert!(
                !["is ", "must ", "are "].iter().any(|v| m.starts_with(v)),
                "{name}: a message with no subject: {m}"
            );
        }
    }
    let r = g.request("POST", "/v1/chat/completions", &chat_body("nope", json!({}))).await;
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    let r = g.request("POST", "/v1/chat/completions", &chat_body("tiny", json!({"max_tokens": 100000}))).await;
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    // The legacy completions default of 16 tokens is a cap: a prompt that leaves fewer is
    // answered to the end of the context, not refused; an explicit 16 is refused.
    let prompt: Vec<u32> = (1..=28).collect();
    let r = g
        .request(
            "POST",
            "/v1/completions",
            &serde_json::to_vec(&json!({"model": "short", "prompt": prompt, "temperature": 0})).unwrap(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["completion_tokens"], 4, "{}", r.text());
    let capped = json!({"model": "short", "prompt": prompt, "max_tokens": 16});
    let r = g.request("POST", "/v1/completions", &serde_json::to_vec(&capped).unwrap()).await;
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded", "{}", r.text());
    let r = g
        .request(
            "POST",
            "/v1/completions",
            &serde_json::to_vec(&json!({"model": "tiny", "prompt": [1, 2], "temperature": 0})).unwrap(),
        )
        .await;
    assert_eq!(r.json()["usage"]["completion_tokens"], 16, "{}", r.text());
    // A schema only the daemon can judge: the error names the field as the client sent it.
    let strange = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strange"}}}});
    let r = g.request("POST", "/v1/chat/completions", &chat_body("tiny", strange)).await;
    let e = &r.json()["error"];
    assert_eq!((r.status, e["param"].as_str()), (400, Some("response_format")), "{e}");
    assert!(!e["message"].as_str().unwrap().contains("constraint.json_schema"), "{e}");
    let r = g.request("GET", "/v1/nothing-here", b"").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_object());
    // An earlier refusal sent back as parts, as OpenAI's clients may.
    let refused = json!({"model": "tiny", "max_tokens": 1, "messages": [{"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I cannot."}, {"type": "text", "text": "Sorry."}]},
        {"role": "user", "content": "y"}]});
    let r = g.request("POST", "/v1/chat/completions", &serde_json::to_vec(&refused).unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = g.request("POST", "/v1/completions", br#"{"model": "tiny", "prompt": "x", "echo": true}"#).await;
    assert_eq!((r.status, r.json()["error"]["param"].as_str()), (400, Some("echo")));
    // Still serving.
    let r = g.request("POST", "/v1/chat/completions", &chat_body("tiny", json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["completion_tokens"], 8);
    assert!(!d.logs().contains("panicked") && !g.logs().contains("panicked"));
}

/// Parses a raw SSE body into (comments, data payloads).
fn sse(body: &str) -> (usize, Vec<String>) {
    let (mut comments, mut data) = (0, vec![]);
    for event in body.split("\n\n").filter(|e| !e.trim().is_empty()) {
        for line in event.lines() {
            if line.starts_with(':') {
                comments += 1;
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push(d.to_string());
            }
        }
    }
    (comments, data)
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_invariants_hold_on_the_raw_stream_and_keep_alives_flow_during_prefill() {
    let config = tiny_config("", &[]);
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let g = Gateway::start(&d.socket, &["--sse-keep-alive-ms", "100"]).await;
    // A long prompt: SmolLM2 takes well over 100 ms to read it on this CPU.
    let long = "Tell me about the sea. ".repeat(150);
    let body = json!({"messages": [{"role": "user", "content": long}], "max_tokens": 6, "stream": true,
        "stream_options": {"include_usage": true}, "temperature": 0});
    let r = g.request("POST", "/v1/chat/completions", &serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
    let text = r.text();
    let (comments, data) = sse(&text);
    assert!(comments >= 1, "keep-alive comments while the prompt is read:\n{text}");
    // The role chunk goes out when the request is admitted; keep-alives follow while the prompt
    // is read, before the first content.
    let first_content = text.find("\"content\":\"").and_then(|_| text.match_indices("data: ").nth(1)).unwrap().0;
    assert!(text[..first_content].contains("keep-alive"), "{text}");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "the first chunk carries the role");
    // And nothing else: sent before the answer's kind is known, an empty `content` would make a
    // tool-call-only answer come out of a client's accumulator with content "" instead of null.
    assert_eq!(chunks[0]["choices"][0]["delta"].as_object().unwrap().len(), 1, "{}", chunks[0]);
    let (usage, choices): (Vec<&Value>, Vec<&Value>) =
        chunks.iter().partition(|c| c["choices"].as_array().unwrap().is_empty());
    assert_eq!(usage.len(), 1, "one usage chunk");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 6);
    assert!(chunks.last().unwrap()["usage"]["prompt_tokens_details"]["cached_tokens"].is_u64());
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["id"], id, "every chunk has the same id");
        assert_eq!(c["object"], "chat.completion.chunk");
        let fr = &c["choices"][0]["finish_reason"];
        if i + 1 < choices.len() {
            assert!(fr.is_null(), "finish_reason only at the end: {c}");
        } else {
            assert_eq!(fr, "length");
        }
    }
    // Without include_usage there is no usage chunk.
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": true});
    let r = g.request("POST", "/v1/chat/completions", &serde_json::to_vec(&body).unwrap()).await;
    let (_, data) = sse(&r.text());
    assert!(data[..data.len() - 1].iter().all(|d| !d.contains("\"usage\"")), "{data:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_frees_the_daemon_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = tiny_config("preload_default = false", &[("tiny", "qwen2-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let g = Gateway::start(&d.socket, &[]).await;
    let body =
        serde_json::to_vec(&json!({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream": true,
        "max_tokens": 400, "logit_bias": {"450": -100, "452": -100}}))
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(&g.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    while got < 2000 {
        got += s.read(&mut buf).await.unwrap();
    }
    assert_eq!(d.status().await.engines[0].active, 1);
    drop(s);
    let start = Instant::now();
    while d.status().await.engines[0].active != 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the daemon kept generating for a gone client");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(d.status().await.engines[0].generated_tokens < 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_survives_a_daemon_restart() {
    let config = tiny_config("preload_default = false", &[("tiny", "llama-f32")]);
    let mut d = Daemon::builder().config(&config).start().await;
    let socket = d.socket.clone();
    let g = Gateway::start(&socket, &[]).await;
    let ok = || chat_body("tiny", json!({"max_tokens": 2}));
    assert_eq!(g.request("POST", "/v1/chat/completions", &ok()).await.status, 200);

    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(20)).unwrap().success());
    let r = g.request("POST", "/v1/chat/completions", &ok()).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "daemon_unavailable");
    assert!(r.header("retry-after").is_some());
    let h = g.request("GET", "/health", b"").await;
    assert_eq!(h.status, 503);
    assert!(h.json()["reason"].as_str().unwrap().contains("not reachable"), "{}", h.text());

    // Same socket, new daemon: the gateway reconnects by itself.
    let log = d.dir.path().join("daemon2.log");
    let mut child = zeta_tests::spawn_daemon(&d.config, &socket, &log, &[]);
    let start = Instant::now();
    loop {
        let r = g.request("POST", "/v1/chat/completions", &ok()).await;
        if r.status == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no recovery: {}", r.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_protect_everything_but_health_and_metrics_report_the_engine() {
    let config = tiny_config("preload_default = false", &[("tiny", "llama-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let g = Gateway::start(&d.socket, &["--api-key", "sekret, other"]).await;
    let r = g.request("GET", "/v1/models", b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    let h = g.request("GET", "/health", b"").await;
    assert_ne!(h.status, 401, "/health is public");
    assert!(h.json()["status"].is_string());
    // The scheme is case-insensitive; a wrong key or an unknown scheme is not.
    for (value, status) in
        [("bearer sekret", 200), ("BEARER sekret", 200), ("Bearer wrong", 401), ("Basic sekret", 401)]
    {
        let r = zeta_tests::http(&g.addr, "GET", "/v1/models", &[("authorization", value)], b"").await.unwrap();
        assert_eq!(r.status, status, "{value}: {}", r.text());
    }
    let auth = [("authorization", "Bearer other"), ("content-type", "application/json")];
    let r =
        zeta_tests::http(&g.addr, "POST", "/v1/chat/completions", &auth, &chat_body("tiny", json!({"max_tokens": 3})))
            .await
            .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-request-id").is_some());
    // The same prompt again reads its tokens from the prefix cache: they are prompt tokens still.
    let again =
        zeta_tests::http(&g.addr, "POST", "/v1/chat/completions", &auth, &chat_body("tiny", json!({"max_tokens": 3})))
            .await
            .unwrap()
            .json();
    let prompt = |v: &Value| v["usage"]["prompt_tokens"].as_u64().unwrap();
    let cached = again["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    assert!(cached > 0, "{again}");
    let m = zeta_tests::http(&g.addr, "GET", "/metrics", &auth, b"").await.unwrap().text();
    let total = |name: &str| -> u64 {
        let line = m
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{model=\"tiny\"}} ")))
            .unwrap_or_else(|| panic!("{name}:\n{m}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(total("zeta_engine_prompt_tokens_total"), prompt(&r.json()) + prompt(&again), "{m}");
    assert_eq!(total("zeta_engine_cached_prompt_tokens_total"), cached, "{m}");
    for needle in [
        "zeta_gateway_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2",
        "zeta_engine_generated_tokens_total{model=\"tiny\"} 6",
        "zeta_engine_active_sequences{model=\"tiny\"} 0",
        "zeta_engine_time_to_first_token_seconds_count{model=\"tiny\"} 2",
        "zeta_engine_inter_token_latency_seconds_count{model=\"tiny\"} 4",
        "zeta_daemon_models_loaded 1",
        "zeta_daemon_memory_active_bytes",
    ] {
        assert!(m.contains(needle), "metrics lack {needle}:\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_is_off_unless_origins_are_configured() {
    let d = Daemon::builder().config("preload_default = false").start().await;
    let preflight = [
        ("origin", "http://app.example"),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "authorization,content-type"),
    ];
    let g = Gateway::start(&d.socket, &[]).await;
    let r = zeta_tests::http(&g.addr, "OPTIONS", "/v1/chat/completions", &preflight, b"").await.unwrap();
    assert!(r.header("access-control-allow-origin").is_none(), "{:?}", r.headers);
    drop(g);
    let g = Gateway::start(&d.socket, &["--cors-origin", "http://app.example"]).await;
    let r = zeta_tests::http(&g.addr, "OPTIONS", "/v1/chat/completions", &preflight, b"").await.unwrap();
    assert_eq!(r.header("access-control-allow-origin"), Some("http://app.example"), "{:?}", r.headers);
    // A browser client sends its key in Authorization, which a `*` would not cover.
    let allowed = r.header("access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{:?}", r.headers);
    let other = [("origin", "http://evil.example"), ("access-control-request-method", "POST")];
    let r = zeta_tests::http(&g.addr, "OPTIONS", "/v1/chat/completions", &other, b"").await.unwrap();
    assert!(r.header("access-control-allow-origin").is_none(), "{:?}", r.headers);
    drop(g);
    // `*` admits every origin (and must not stop the gateway from starting).
    let g = Gateway::start(&d.socket, &["--cors-origin", "*"]).await;
    let r = zeta_tests::http(&g.addr, "OPTIONS", "/v1/chat/completions", &other, b"").await.unwrap();
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{:?}", r.headers);
}

#[test]
fn flags_that_would_refuse_everything_stop_the_gateway_at_start() {
    for (flags, needle) in [
        (&["--request-timeout", "0"][..], "--request-timeout"),
        (&["--body-limit", "0"][..], "--body-limit"),
        (&["--max-connections", "0"][..], "--max-connections"),
        (&["--api-key", " , "][..], "--api-key is empty"),
        // Past any clock's arithmetic: refused, not a panic.
        (&["--body-timeout", "1e300"][..], "--body-timeout"),
        (&["--request-timeout", "18446744073709551615"][..], "--request-timeout"),
        // `--check` judges every flag the start would.
        (&["--check", "--header-timeout", "0"][..], "--header-timeout"),
    ] {
        let out = std::process::Command::new(zeta_tests::bin("zeta-gateway"))
            .args(["--listen", "127.0.0.1:0", "--socket", "/nonexistent/zeta.sock"])
            .args(flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() == Some(1) && err.contains(needle), "{flags:?}: {:?} {err}", out.status);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_and_sigterm_drain_the_gateway_open_streams_finish() {
    let config = tiny_config("default_model = \"tiny\"", &[("tiny", "llama-f32")]);
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    for sig in [libc::SIGHUP, libc::SIGTERM] {
        let mut g = Gateway::start(&d.socket, &[]).await;
        let addr = g.addr.clone();
        let stream = tokio::spawn(async move {
            let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64, "stream": true,
                "temperature": 0});
            zeta_tests::http(
                &addr,
                "POST",
                "/v1/chat/completions",
                &[("content-type", "application/json")],
                &serde_json::to_vec(&body).unwrap(),
            )
            .await
        });
        // Held mid-answer: the daemon stops while the stream is open.
        let start = Instant::now();
        while d.status().await.engines.first().is_none_or(|e| e.active == 0) {
            assert!(start.elapsed() < Duration::from_secs(20), "the stream never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        d.signal(libc::SIGSTOP);
        g.signal(sig);
        // The listener closes at once: new clients are refused, not left hanging.
        let start = Instant::now();
        while tokio::net::TcpStream::connect(&g.addr).await.is_ok() {
            assert!(start.elapsed() < Duration::from_secs(5), "signal {sig}: still accepting connections");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(g.wait_exit(Duration::from_millis(300)).is_none(), "signal {sig}: exited with a stream open");
        d.signal(libc::SIGCONT);
        let r = stream.await.unwrap().expect("the open stream");
        let text = r.text();
        assert_eq!(r.status, 200, "{text}");
        assert!(text.trim_end().ends_with("data: [DONE]") && !text.contains("\"error\""), "signal {sig}: {text}");
        let status = g.wait_exit(Duration::from_secs(10)).expect("the gateway exits once the stream ended");
        assert!(status.success(), "signal {sig}: {status:?}\n{}", g.logs());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn models_load_and_unload_over_http_say_what_happened() {
    let config = tiny_config("preload_default = false", &[("tiny", "llama-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let g = Gateway::start(&d.socket, &[]).await;
    let r = g.request("POST", "/v1/models/tiny/load", b"").await;
    assert_eq!((r.status, r.json()["state"].as_str()), (200, Some("loaded")), "{}", r.text());
    let r = g.request("POST", "/v1/models/tiny/unload", b"").await;
    assert_eq!(r.json(), json!({"success": true, "model": "tiny", "state": "unloaded", "still_running": 0}));
    let r = g.request("POST", "/v1/models/tiny/unload", b"").await;
    assert_eq!(r.json(), json!({"success": false, "model": "tiny", "state": "not_loaded", "still_running": 0}));
}

#[test]
fn an_empty_config_variable_is_unset_for_daemon_and_gateway_alike() {
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("z.sock");
    for bin in ["zeta-mlxd", "zeta-gateway"] {
        let out = std::process::Command::new(zeta_tests::bin(bin))
            .args(["--check", "--socket", socket.to_str().unwrap()])
            .env("ZETA_MLX_CONFIG", "")
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .unwrap();
        assert!(out.status.success(), "{bin}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_counts_render_the_template_variables_a_generation_would() {
    // A template that writes its thinking switch into the prompt, as Qwen3's does.
    let dir = tempfile::tempdir().unwrap();
    let base = zeta_tests::tiny("qwen2-f32");
    for f in std::fs::read_dir(&base).unwrap() {
        let f = f.unwrap().path();
        std::os::unix::fs::symlink(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let cfg_path = dir.path().join("tokenizer_config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(base.join("tokenizer_config.json")).unwrap()).unwrap();
    let template = cfg["chat_template"].as_str().unwrap().to_string()
        + "{%- if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{%- endif %}";
    cfg["chat_template"] = json!(template);
    std::fs::remove_file(&cfg_path).unwrap();
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let config = format!("default_model = \"think\"\n[models.think]\npath = \"{}\"\n", dir.path().display());
    let d = Daemon::builder().config(&config).wait_ready().start().await;
    let g = Gateway::start(&d.socket, &[]).await;
    let post = async |path: &str, body: Value| {
        let r = g.request("POST", path, &serde_json::to_vec(&body).unwrap()).await;
        (r.status, r.json())
    };
    let messages = json!([{"role": "user", "content": "Hello there"}]);

    // Anthropic: count_tokens reads `thinking` as the message request does.
    let off = json!({"model": "think", "messages": messages, "thinking": {"type": "disabled"}});
    let (_, plain) = post("/v1/messages/count_tokens", json!({"model": "think", "messages": messages})).await;
    let (_, counted) = post("/v1/messages/count_tokens", off.clone()).await;
    let mut gen_body = off.clone();
    gen_body["max_tokens"] = json!(1);
    let (status, m) = post("/v1/messages", gen_body).await;
    assert_eq!(status, 200, "{m}");
    let used = m["usage"]["input_tokens"].as_u64().unwrap() + m["usage"]["cache_read_input_tokens"].as_u64().unwrap();
    assert_eq!(counted["input_tokens"].as_u64(), Some(used), "{counted} vs {m}");
    assert!(counted["input_tokens"].as_u64() > plain["input_tokens"].as_u64(), "{counted} vs {plain}");

    // OpenAI-style counts take chat_template_kwargs and reasoning_effort as chat does.
    for extra in [json!({"chat_template_kwargs": {"enable_thinking": false}}), json!({"reasoning_effort": "none"})] {
        let mut count = json!({"model": "think", "messages": messages});
        let mut chat = json!({"model": "think", "messages": messages, "max_tokens": 1});
        for (k, v) in extra.as_object().unwrap() {
            count[k] = v.clone();
            chat[k] = v.clone();
        }
        let (_, n) = post("/v1/tokens/count", count).await;
        let (status, c) = post("/v1/chat/completions", chat).await;
        assert_eq!(status, 200, "{c}");
        assert_eq!(n["count"], c["usage"]["prompt_tokens"], "{extra}: {n} vs {c}");
        assert!(n["count"].as_u64() > plain["input_tokens"].as_u64(), "{extra}: {n}");
    }
    // A text is tokenized as it is: template variables are a mistake, not something to ignore.
    let (status, e) = post(
        "/v1/tokenize",
        json!({"model": "think", "text": "hi", "chat_template_kwargs": {"enable_thinking": false}}),
    )
    .await;
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("chat_template_kwargs")), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_framing_is_read_strictly_and_keys_come_before_body_checks() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = tiny_config("preload_default = false", &[("tiny", "llama-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let g = Gateway::start(&d.socket, &["--api-key", "sk-test"]).await;
    let raw = async |head: &str, body: &[u8]| {
        let mut s = tokio::net::TcpStream::connect(&g.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        zeta_tests::parse_response(&out).expect("a response")
    };
    let key = "authorization: Bearer sk-test\r\nconnection: close\r\n";
    for (name, head, status, code) in [
        ("no Host", format!("GET /v1/models HTTP/1.1\r\n{key}\r\n"), 400, None),
        ("two Hosts", format!("GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\nhost: evil.example\r\n{key}\r\n"), 400, None),
        // In absolute form the target's host is the one asked for, whatever Host says.
        (
            "an absolute target naming another host",
            format!("GET http://evil.example/v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\n{key}\r\n"),
            403,
            Some("host_not_allowed"),
        ),
        ("an absolute loopback target", format!("GET http://localhost/v1/models HTTP/1.1\r\nhost: evil.example\r\n{key}\r\n"), 200, None),
        ("HTTP/1.0 without Host", "GET /v1/models HTTP/1.0\r\nauthorization: Bearer sk-test\r\n\r\n".to_string(), 200, None),
        (
            "a transfer coding other than chunked",
            format!(
                "POST /v1/tokens/count HTTP/1.1\r\nhost: 127.0.0.1\r\n{key}content-type: application/json\r\ntransfer-encoding: gzip, chunked\r\n\r\n"
            ),
            501,
            Some("unsupported_transfer_encoding"),
        ),
        // Without the key, a body's type is none of the client's business yet.
        (
            "no key and a text body",
            "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\n".to_string(),
            401,
            Some("invalid_api_key"),
        ),
    ] {
        let body: &[u8] = if head.contains("chunked") { b"2\r\n{}\r\n0\r\n\r\n" } else if head.contains("content-length: 2") { b"hi" } else { b"" };
        let r = raw(&head, body).await;
        assert_eq!(r.status, status, "{name}: {}", r.text());
        if status != 200 {
            let e = r.json();
            assert!(e["error"]["message"].is_string(), "{name}: no envelope: {}", r.text());
            assert_eq!(e["error"]["code"].as_str(), code, "{name}: {}", r.text());
        }
    }
}
