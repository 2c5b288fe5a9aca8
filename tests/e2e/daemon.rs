//! The real `zeta-mlxd` on a temporary socket, driven by tonic clients: streamed generation,
//! concurrent generations batched with correct outputs, cancellation freeing the slot, a table of
//! bad requests, health and reflection, the official Python client (`grpcio`) as it comes, and
//! conversations that drop their oldest turns to fit the context.

use std::time::{Duration, Instant};

use tonic::Code;
use zeta_proto::v1;
use zeta_proto::v1::constraint::Kind;
use zeta_tests::{Daemon, chat, generate, tiny_config, tokens};

#[tokio::test(flavor = "multi_thread")]
async fn streams_a_generation_with_the_default_model() {
    let d = Daemon::builder().start().await;
    let mut g = d.generation().await;
    let mut stream = g.generate(chat("", "What is the capital of France?", 16)).await.unwrap().into_inner();
    let mut kinds = Vec::new();
    let mut text = String::new();
    while let Some(ev) = stream.message().await.unwrap() {
        match ev.event.unwrap() {
            v1::generate_event::Event::Started(s) => {
                kinds.push("started");
                assert_eq!(s.model, "smollm2-135m");
                assert!(s.prompt_tokens > 10);
                assert!(!s.request_id.is_empty());
            }
            v1::generate_event::Event::Delta(dl) => {
                kinds.push("delta");
                text.push_str(&dl.text);
                assert_eq!(dl.token_ids.len(), 1);
            }
            v1::generate_event::Event::Finished(f) => {
                kinds.push("finished");
                assert_eq!(f.reason, v1::FinishReason::Stop as i32, "SmolLM2 answers in a few tokens");
                let u = f.usage.unwrap();
                assert_eq!(u.completion_tokens as usize, kinds.iter().filter(|k| **k == "delta").count());
            }
        }
    }
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"finished"));
    assert!(text.contains("Paris"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_generations_are_batched_with_the_same_outputs() {
    let config = tiny_config("preload_default = false", &[("tiny", "llama-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let prompts: Vec<Vec<u32>> = vec![vec![5, 17, 42], vec![250, 7, 77, 9], vec![1, 2, 3], vec![100, 200, 300, 11]];
    let mut g = d.generation().await;
    let mut alone = Vec::new();
    for p in &prompts {
        alone.push(generate(&mut g, tokens("tiny", p.clone(), 20)).await.unwrap().tokens);
    }
    let steps_before = d.status().await.engines[0].steps;
    let handles: Vec<_> = prompts
        .iter()
        .map(|p| {
            let mut g = g.clone();
            let req = tokens("tiny", p.clone(), 20);
            tokio::spawn(async move { generate(&mut g, req).await.unwrap().tokens })
        })
        .collect();
    let mut together = Vec::new();
    for h in handles {
        together.push(h.await.unwrap());
    }
    assert_eq!(together, alone);
    // Four sequences of ~20 tokens in far fewer than 4 x 20 steps: they ran in one batch.
    let steps = d.status().await.engines[0].steps - steps_before;
    let total: usize = together.iter().map(Vec::len).sum();
    assert!((steps as usize) < total * 3 / 4, "{steps} steps for {total} tokens: not batched");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_stream_frees_its_slot() {
    let config = tiny_config("preload_default = false", &[("tiny", "qwen2-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let mut g = d.generation().await;
    let mut req = tokens("tiny", vec![5, 6, 7], 400);
    req.sampling.as_mut().unwrap().logit_bias = [(450, -100.0), (452, -100.0)].into();
    let mut stream = g.generate(req).await.unwrap().into_inner();
    for _ in 0..5 {
        stream.message().await.unwrap().unwrap();
    }
    assert_eq!(d.status().await.engines[0].active, 1);
    drop(stream);
    let start = Instant::now();
    loop {
        let s = d.status().await;
        if s.engines[0].active == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The log says how it ended, as it says `finished` for the others.
    while !d.logs().contains("cancelled: the client went away") {
        assert!(start.elapsed() < Duration::from_secs(10), "no cancellation logged:\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!d.logs().contains(" finished"), "the generation ended before the stream was dropped:\n{}", d.logs());
    // The model serves the next request.
    assert!(!generate(&mut g, tokens("tiny", vec![1, 2], 3)).await.unwrap().tokens.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_their_status_and_the_daemon_keeps_serving() {
    let config = tiny_config("preload_default = false\nmax_queue = 1", &[("tiny", "llama-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let mut g = d.generation().await;
    let with = |f: &dyn Fn(&mut v1::GenerateRequest)| {
        let mut r = tokens("tiny", vec![5, 6, 7], 4);
        f(&mut r);
        r
    };
    let sampling = |f: &dyn Fn(&mut v1::SamplingParams)| with(&|r| f(r.sampling.as_mut().unwrap()));
    let msg = |role: &str, content: Option<&str>| v1::Message {
        role: role.into(),
        content: content.map(String::from),
        ..Default::default()
    };
    let chat_of = |msgs: Vec<v1::Message>| {
        with(&|r| {
            r.input = Some(v1::generate_request::Input::Chat(v1::Chat {
                messages: msgs.clone(),
                continue_final_message: false,
            }))
        })
    };
    let cases: Vec<(&str, v1::GenerateRequest, Code, &str)> = vec![
        ("unknown model", with(&|r| r.model = "no-such-model".into()), Code::NotFound, "does not exist"),
        ("no input", with(&|r| r.input = None), Code::InvalidArgument, "input"),
        (
            "empty prompt",
            with(&|r| r.input = Some(v1::generate_request::Input::PromptTokens(v1::TokenIds { ids: vec![] }))),
            Code::InvalidArgument,
            "prompt",
        ),
        (
            "token out of vocab",
            with(&|r| r.input = Some(v1::generate_request::Input::PromptTokens(v1::TokenIds { ids: vec![1, 99999] }))),
            Code::InvalidArgument,
            "99999",
        ),
        ("negative temperature", sampling(&|s| s.temperature = Some(-1.0)), Code::InvalidArgument, "temperature"),
        ("NaN top_p", sampling(&|s| s.top_p = Some(f32::NAN)), Code::InvalidArgument, "top_p"),
        ("top_p above 1", sampling(&|s| s.top_p = Some(1.5)), Code::InvalidArgument, "top_p"),
        (
            "bad logit bias token",
            sampling(&|s| s.logit_bias = [(123456, 1.0)].into()),
            Code::InvalidArgument,
            "logit_bias",
        ),
        ("too many logprobs", with(&|r| r.logprobs = Some(50)), Code::InvalidArgument, "invalid logprobs: 50"),
        ("zero max_tokens", with(&|r| r.max_tokens = Some(0)), Code::InvalidArgument, "max_tokens"),
        ("over the context", with(&|r| r.max_tokens = Some(100_000)), Code::OutOfRange, "context length"),
        (
            "prompt over the context",
            with(&|r| r.input = Some(v1::generate_request::Input::PromptTokens(v1::TokenIds { ids: vec![5; 600] }))),
            Code::OutOfRange,
            "context",
        ),
        (
            // Refused from its size alone, before megabytes are tokenized to learn the count.
            "prompt text far over the context",
            with(&|r| r.input = Some(v1::generate_request::Input::Prompt("word ".repeat(1 << 20)))),
            Code::OutOfRange,
            "at least",
        ),
        ("too many stop strings", with(&|r| r.stop = vec!["x".into(); 20]), Code::InvalidArgument, "stop"),
        ("a 100 KB request id", with(&|r| r.request_id = "r".repeat(100_000)), Code::InvalidArgument, "request_id"),
        ("an empty stop string", with(&|r| r.stop = vec!["x".into(), String::new()]), Code::InvalidArgument, "stop[1]"),
        (
            "a stop string too long",
            with(&|r| r.stop = vec!["x".into(), "y".repeat(1025)]),
            Code::InvalidArgument,
            "stop[1]",
        ),
        ("no messages", chat_of(vec![]), Code::InvalidArgument, "messages"),
        (
            "continuing a user message",
            with(&|r| {
                r.input = Some(v1::generate_request::Input::Chat(v1::Chat {
                    messages: vec![msg("user", Some("hi"))],
                    continue_final_message: true,
                }))
            }),
            Code::InvalidArgument,
            "continue_final_message",
        ),
        ("unknown role", chat_of(vec![msg("wizard", Some("hi"))]), Code::InvalidArgument, "messages[0].role"),
        ("missing content", chat_of(vec![msg("user", None)]), Code::InvalidArgument, "messages[0].content"),
        (
            "bad template kwargs",
            with(&|r| {
                r.input = Some(v1::generate_request::Input::Chat(v1::Chat {
                    messages: vec![msg("user", Some("hi"))],
                    continue_final_message: false,
                }));
                r.chat_template_kwargs_json = "[1]".into();
            }),
            Code::InvalidArgument,
            "chat_template_kwargs",
        ),
        (
            "template kwargs the server sets",
            with(&|r| {
                r.input = Some(v1::generate_request::Input::Chat(v1::Chat {
                    messages: vec![msg("user", Some("hi"))],
                    continue_final_message: false,
                }));
                r.chat_template_kwargs_json = r#"{"add_generation_prompt": false}"#.into();
            }),
            Code::InvalidArgument,
            "chat_template_kwargs.add_generation_prompt",
        ),
        (
            "template kwargs with a raw prompt",
            with(&|r| {
                r.input = Some(v1::generate_request::Input::PromptTokens(v1::TokenIds { ids: vec![1, 2] }));
                r.chat_template_kwargs_json = r#"{"enable_thinking": false}"#.into();
            }),
            Code::InvalidArgument,
            "chat_template_kwargs",
        ),
        (
            "schema not JSON",
            constrained(with(&|_| {}), Kind::JsonSchema("{nope".into())),
            Code::InvalidArgument,
            "not JSON",
        ),
        (
            "schema with a dangling $ref",
            constrained(with(&|_| {}), Kind::JsonSchema(r##"{"$ref": "#/$defs/gone"}"##.into())),
            Code::InvalidArgument,
            "gone",
        ),
        (
            "broken grammar",
            constrained(with(&|_| {}), Kind::Grammar("start: (".into())),
            Code::InvalidArgument,
            "grammar",
        ),
        (
            "grammar over the limit",
            constrained(with(&|_| {}), Kind::Grammar(format!("start: \"{}\"", "a".repeat(300_000)))),
            Code::InvalidArgument,
            "above the limit",
        ),
    ];
    for (name, req, code, needle) in cases {
        let err = generate(&mut g, req).await.expect_err(name);
        assert_eq!(err.code(), code, "{name}: {}", err.message());
        assert!(err.message().contains(needle), "{name}: '{}' should mention '{needle}'", err.message());
    }
    // Arguments that are not JSON (a call this daemon returned cut short by max_tokens) are sent
    // back as they came and must be taken, not refused.
    let cut_call = chat_of(vec![v1::Message {
        role: "assistant".into(),
        tool_calls: vec![v1::ToolCall { id: "c".into(), name: "f".into(), arguments: "{\"city\": \"Par".into() }],
        ..Default::default()
    }]);
    let out = generate(&mut g, cut_call).await.expect("cut-short tool-call arguments in the history");
    assert!(out.finished.is_some(), "{out:?}");
    // An input over the context is named by its own field: token ids, text or a chat.
    let param = |e: &tonic::Status| e.metadata().get("zeta-param").map(|v| v.to_str().unwrap().to_string());
    let err = generate(&mut g, with(&|r| r.max_tokens = Some(100_000))).await.unwrap_err();
    assert_eq!(param(&err).as_deref(), Some("prompt_tokens"));
    let err = generate(
        &mut g,
        with(&|r| {
            r.max_tokens = Some(100_000);
            r.input = Some(v1::generate_request::Input::Prompt("hi".into()));
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(param(&err).as_deref(), Some("prompt"));
    let err = generate(
        &mut g,
        with(&|r| {
            r.max_tokens = Some(100_000);
            r.input = Some(v1::generate_request::Input::Chat(v1::Chat {
                messages: vec![msg("user", Some("hi"))],
                continue_final_message: false,
            }));
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(param(&err).as_deref(), Some("messages"));
    let err = generate(&mut g, constrained(with(&|_| {}), Kind::JsonSchema(r#"{"type": "strange"}"#.into())))
        .await
        .unwrap_err();
    assert_eq!(err.metadata().get("zeta-param").map(|v| v.to_str().unwrap()), Some("constraint.json_schema"));
    // A schema that only refers to itself can produce nothing: refused at admission, not a batch
    // failure once it runs.
    let err =
        generate(&mut g, constrained(with(&|_| {}), Kind::JsonSchema(r##"{"$ref": "#"}"##.into()))).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{}", err.message());
    assert!(err.message().contains("admits no output"), "{}", err.message());

    // A full queue answers RESOURCE_EXHAUSTED with a retry hint. At most 16 requests run and 1
    // waits (`max_queue = 1`), and a request of 480 tokens outlasts the burst, so of 24 sent at
    // once some are refused, while the ones let in run to the end.
    let long = || {
        let mut r = tokens("tiny", vec![5, 6, 7], 480);
        r.sampling.as_mut().unwrap().logit_bias = [(2, -100.0)].into();
        r
    };
    let burst: Vec<_> = (0..24)
        .map(|_| {
            let mut g = g.clone();
            let r = long();
            tokio::spawn(async move { generate(&mut g, r).await })
        })
        .collect();
    let (mut served, mut refused) = (0, 0);
    for r in burst {
        match r.await.unwrap() {
            Ok(out) => {
                assert_eq!(out.tokens.len(), 480);
                served += 1;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(e.message().contains("limit 1"), "{}", e.message());
                assert_eq!(e.metadata().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
                refused += 1;
            }
        }
    }
    assert!(served >= 1 && refused >= 24 - 17, "{served} served, {refused} refused");

    let out = generate(&mut g, tokens("tiny", vec![5, 6, 7], 4)).await.unwrap();
    assert_eq!(out.tokens.len(), 4, "still serving");
    assert!(!d.logs().contains("panicked"), "{}", d.logs());
}

/// `r` with its output constrained by `kind`.
fn constrained(mut r: v1::GenerateRequest, kind: Kind) -> v1::GenerateRequest {
    r.constraint = Some(v1::Constraint { kind: Some(kind) });
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn a_constraint_holds_for_grpc_callers_on_either_vocabulary() {
    // llama-f32's vocabulary is SentencePiece-style (byte fallback), qwen2-f32's byte-level BPE.
    let config = tiny_config("preload_default = false", &[("llama", "llama-f32"), ("qwen", "qwen2-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let mut g = d.generation().await;
    for model in ["llama", "qwen"] {
        for seed in 0..4 {
            let mut r = tokens(model, vec![5, 6, 7], 32);
            r.sampling = Some(v1::SamplingParams { temperature: Some(1.0), seed: Some(seed), ..Default::default() });
            r.constraint = Some(v1::Constraint { kind: Some(Kind::Grammar("start: /[a-c]{3}-[0-9]{2}/".into())) });
            let out = generate(&mut g, r).await.unwrap();
            let t = &out.text;
            let ok = t.len() == 6
                && t[..3].bytes().all(|b| (b'a'..=b'c').contains(&b))
                && &t[3..4] == "-"
                && t[4..].bytes().all(|b| b.is_ascii_digit());
            assert!(ok, "{model} seed {seed}: {t:?}");
            assert_eq!(out.finished.unwrap().reason, v1::FinishReason::Stop as i32, "the grammar ends the output");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_work_over_the_socket() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let d = Daemon::builder().wait_ready().start().await;
    let mut health = HealthClient::new(d.channel().await);
    for service in ["", "zeta.mlx.v1.Generation", "zeta.mlx.v1.Models"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status, 1, "{service} SERVING");
    }
    // Both protocol versions: grpcurl speaks v1, grpcio-reflection and other older clients only
    // v1alpha. The generated types differ by module only.
    macro_rules! list_services {
        ($v:ident) => {{
            use tonic_reflection::pb::$v::ServerReflectionRequest;
            use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
            let mut refl = ServerReflectionClient::new(d.channel().await);
            let req = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut resp = refl.server_reflection_info(tokio_stream::iter(vec![req])).await.unwrap().into_inner();
            let Some(MessageResponse::ListServicesResponse(list)) =
                resp.message().await.unwrap().unwrap().message_response
            else {
                panic!("no service list over {}", stringify!($v))
            };
            list.service.into_iter().map(|s| s.name).collect::<Vec<String>>()
        }};
    }
    for names in [list_services!(v1), list_services!(v1alpha)] {
        for want in ["zeta.mlx.v1.Generation", "zeta.mlx.v1.Models", "zeta.mlx.v1.Daemon", "grpc.health.v1.Health"] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
    }
}

/// Python's `grpcio` (gRPC's C core) names the percent-encoded socket path as `:authority`, and
/// grpc-java the raw path; h2 alone refuses both. The official client must work as it comes.
#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_grpc_client_works_with_its_default_authority() {
    let config = tiny_config("preload_default = false", &[("tiny", "llama-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let mut g = d.generation().await;
    let expected = generate(&mut g, tokens("tiny", vec![5, 17, 42], 8)).await.unwrap().tokens;
    assert_eq!(expected.len(), 8);
    let args = vec![d.socket.display().to_string(), "tiny".into(), serde_json::to_string(&expected).unwrap()];
    zeta_tests::grpc_conformance("grpc_conformance.py", args, &d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn truncation_drops_the_oldest_turns_to_fit_the_context() {
    use v1::generate_request::Input;
    let config = tiny_config("preload_default = false", &[("t", "llama-f32")]);
    let d = Daemon::builder().config(&config).start().await;
    let (mut g, mut m) = (d.generation().await, d.models().await);
    let msg = |role: &str, text: String| v1::Message { role: role.into(), content: Some(text), ..Default::default() };
    let request = |messages: Vec<v1::Message>, truncate: bool| v1::GenerateRequest {
        model: "t".into(),
        input: Some(Input::Chat(v1::Chat { messages, continue_final_message: false })),
        sampling: Some(v1::SamplingParams { temperature: Some(0.0), ..Default::default() }),
        max_tokens: Some(8),
        truncate_oldest_turns: truncate,
        ..Default::default()
    };
    let mut count = async |messages: &[v1::Message]| {
        let input = v1::tokenize_request::Input::Chat(v1::Chat { messages: messages.to_vec(), ..Default::default() });
        let r = v1::TokenizeRequest { model: "t".into(), input: Some(input), ..Default::default() };
        m.tokenize(r).await.unwrap().into_inner().count as usize
    };
    // A system message, eight long turns (one calling a tool), a short last question: over the
    // 512-token context.
    let mut messages = vec![msg("system", "Be brief.".into())];
    for i in 0..8 {
        messages.push(msg("user", format!("question {i}: {}", "tell me more ".repeat(12))));
        messages.push(msg("assistant", "it is so ".repeat(12)));
    }
    messages.push(msg("user", "and the last question?".into()));
    let total = count(&messages).await;
    assert!(total > 512, "the conversation must overflow the context: {total} tokens");

    let e = generate(&mut g, request(messages.clone(), false)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");

    // The conversation the daemon should keep: the system message and the turns from the
    // earliest user message on which prompt + max_tokens fit.
    let mut kept = None;
    for at in (2..messages.len()).filter(|&i| messages[i].role == "user") {
        let cut: Vec<v1::Message> =
            std::iter::once(messages[0].clone()).chain(messages[at..].iter().cloned()).collect();
        if count(&cut).await + 8 <= 512 {
            kept = Some(cut);
            break;
        }
    }
    let kept = kept.unwrap();
    assert!(kept.len() > 3 && kept.len() < messages.len() - 2, "some turns, not all, fit: {}", kept.len());
    let out = generate(&mut g, request(messages.clone(), true)).await.unwrap();
    let direct = generate(&mut g, request(kept.clone(), false)).await.unwrap();
    assert_eq!(out.started.unwrap().prompt_tokens as usize, count(&kept).await);
    assert_eq!(out.tokens, direct.tokens, "the same answer as the cut conversation asked directly");
    assert!(d.logs().contains("dropped the oldest turns"), "{}", d.logs());

    // A conversation whose last turn alone is too long is refused with its full size.
    let huge =
        vec![msg("user", "hi".into()), msg("assistant", "hello".into()), msg("user", "tell me more ".repeat(200))];
    let e = generate(&mut g, request(huge, true)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    // Only a conversation has turns.
    let mut raw = tokens("t", vec![1, 2, 3], 2);
    raw.truncate_oldest_turns = true;
    let e = generate(&mut g, raw).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("truncate_oldest_turns"), "{e:?}");
}
