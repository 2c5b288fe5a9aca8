//! The daemon's one converter between the wire and the engine, on its own: requests as gRPC
//! clients send them, to the engine's request or to the error naming the field; shaped output
//! and engine events to the wire's events. No model and no MLX work: each case runs in
//! microseconds.

use std::time::Duration;

use zeta_engine::tools::{CallDelta, ForcedChoice, ShapedDelta};
use zeta_engine::{FinishReason, Prompt, Timings, Usage};
use zeta_mlxd::config::SamplingDefaults;
use zeta_mlxd::convert;
use zeta_mlxd::error::DaemonError;
use zeta_proto::v1;

fn user(text: &str) -> v1::Message {
    v1::Message { role: "user".into(), content: Some(text.into()), ..Default::default() }
}

fn chat_request(messages: Vec<v1::Message>) -> v1::GenerateRequest {
    v1::GenerateRequest {
        input: Some(v1::generate_request::Input::Chat(v1::Chat { messages, continue_final_message: false })),
        ..Default::default()
    }
}

fn field(e: DaemonError) -> String {
    match e {
        DaemonError::Invalid { field, .. } => field,
        other => panic!("not a field error: {other:?}"),
    }
}

#[test]
fn bad_requests_name_the_field() {
    let tool =
        |name: &str, params: &str| v1::Tool { name: name.into(), parameters_json: params.into(), ..Default::default() };
    let call = |args: &str| v1::ToolCall { id: "c1".into(), name: "f".into(), arguments: args.into() };
    let cases: Vec<(&str, v1::GenerateRequest, &str)> = vec![
        ("no input", v1::GenerateRequest::default(), "input"),
        ("no messages", chat_request(vec![]), "messages"),
        ("unknown role", chat_request(vec![v1::Message { role: "wizard".into(), ..user("x") }]), "messages[0].role"),
        ("user without content", chat_request(vec![v1::Message { content: None, ..user("x") }]), "messages[0].content"),
        (
            "tool calls from the user",
            chat_request(vec![v1::Message { tool_calls: vec![call("{}")], ..user("x") }]),
            "messages[0].tool_calls",
        ),
        (
            "tool without a name",
            v1::GenerateRequest { tools: vec![tool("", "")], ..chat_request(vec![user("x")]) },
            "tools[0].function.name",
        ),
        (
            "parameters not JSON",
            v1::GenerateRequest { tools: vec![tool("f", "{")], ..chat_request(vec![user("x")]) },
            "tools[0].function.parameters",
        ),
        (
            "kwargs not an object",
            v1::GenerateRequest { chat_template_kwargs_json: "[1]".into(), ..chat_request(vec![user("x")]) },
            "chat_template_kwargs",
        ),
        (
            "tools on a raw prompt",
            v1::GenerateRequest {
                input: Some(v1::generate_request::Input::Prompt("x".into())),
                tools: vec![tool("f", "")],
                ..Default::default()
            },
            "tools",
        ),
    ];
    for (case, req, want) in cases {
        let e = convert::generate(&req, &SamplingDefaults::default(), "r")
            .err()
            .unwrap_or_else(|| panic!("{case}: accepted"));
        assert_eq!(field(e), want, "{case}");
    }
}

#[test]
fn a_chat_request_converts_with_defaults_beneath_it() {
    let mut req = chat_request(vec![
        v1::Message { role: "developer".into(), ..user("Be brief.") },
        user("Hi"),
        v1::Message {
            role: "assistant".into(),
            content: None,
            tool_calls: vec![
                v1::ToolCall { id: "c1".into(), name: "f".into(), arguments: "".into() },
                v1::ToolCall { id: "c2".into(), name: "f".into(), arguments: "{\"city\": \"Par".into() },
            ],
            ..Default::default()
        },
    ]);
    req.sampling = Some(v1::SamplingParams { temperature: Some(0.5), ..Default::default() });
    req.tools = vec![v1::Tool { name: "f".into(), description: "does f".into(), ..Default::default() }];
    req.max_tokens = None;
    req.stop = vec!["END".into()];
    req.logprobs = Some(2);
    let defaults =
        SamplingDefaults { top_p: Some(0.8), temperature: Some(0.1), max_tokens: Some(99), ..Default::default() };
    let out = convert::generate(&req, &defaults, "req-7").unwrap();
    assert_eq!(out.request_id, "req-7");
    assert_eq!(out.sampling.temperature, 0.5, "the request beats the model's default");
    assert_eq!(out.sampling.top_p, 0.8, "the model's default beats the engine's");
    assert_eq!(out.sampling.logprobs, Some(2));
    assert_eq!((out.max_tokens, out.max_tokens_cap), (None, Some(99)), "the model's default is a cap");
    assert_eq!(out.stop, ["END"]);
    let Prompt::Chat { messages, tools, add_generation_prompt, .. } = &out.prompt else { panic!("{:?}", out.prompt) };
    assert_eq!(messages[0].role, "system", "developer reaches templates as system");
    assert_eq!(messages[2].tool_calls[0].function.arguments, serde_json::json!({}), "empty arguments are {{}}");
    // A call cut short (as a max_tokens answer returns it) goes back to the template as its text.
    assert_eq!(messages[2].tool_calls[1].function.arguments, serde_json::json!("{\"city\": \"Par"));
    let tools = tools.as_ref().unwrap();
    assert_eq!(tools[0]["function"]["name"], "f");
    assert_eq!(tools[0]["function"]["parameters"]["type"], "object");
    assert!(*add_generation_prompt);

    // Continuing the final message replaces the generation prompt (an assistant message that
    // calls no tools is continued; one that calls tools is refused, up front).
    if let Some(v1::generate_request::Input::Chat(c)) = &mut req.input {
        c.continue_final_message = true;
    }
    let e = convert::generate(&req, &defaults, "r").unwrap_err();
    assert!(e.to_string().contains("calls tools"), "{e}");
    if let Some(v1::generate_request::Input::Chat(c)) = &mut req.input {
        c.messages.push(v1::Message { role: "assistant".into(), content: Some("Sure".into()), ..Default::default() });
    }
    let out = convert::generate(&req, &defaults, "r").unwrap();
    let Prompt::Chat { add_generation_prompt, continue_final_message, .. } = &out.prompt else { panic!() };
    assert!(!*add_generation_prompt && *continue_final_message);

    // tool_choice none hides the tools from the prompt.
    req.tool_choice = Some(v1::ToolChoice { mode: v1::tool_choice::Mode::None as i32, function: String::new() });
    let out = convert::generate(&req, &defaults, "r").unwrap();
    let Prompt::Chat { tools, .. } = &out.prompt else { panic!() };
    assert!(tools.is_none());
}

#[test]
fn tool_choice_becomes_the_shaping() {
    use v1::tool_choice::Mode;
    let choice = |mode: Mode, f: &str| v1::ToolChoice { mode: mode as i32, function: f.into() };
    assert_eq!(convert::shaping(&[], None, true).forced, None);
    assert!(convert::shaping(&[], None, true).separate_reasoning);
    assert_eq!(convert::shaping(&[], Some(&choice(Mode::Auto, "")), false).forced, None);
    assert_eq!(convert::shaping(&[], Some(&choice(Mode::Required, "")), false).forced, Some(ForcedChoice::Required));
    assert_eq!(
        convert::shaping(&[], Some(&choice(Mode::Auto, "get_time")), false).forced,
        Some(ForcedChoice::Function("get_time".into()))
    );
    assert!(convert::hides_tools(Some(&choice(Mode::None, ""))));
    assert!(!convert::hides_tools(Some(&choice(Mode::None, "f"))));
    // Strict tools are constrained unless the tools are hidden.
    let tool = |name: &str, strict: bool| v1::Tool { name: name.into(), strict, ..Default::default() };
    let tools = [tool("a", true), tool("b", false)];
    assert_eq!(convert::shaping(&tools, None, false).strict, ["a"]);
    assert!(convert::shaping(&tools, Some(&choice(Mode::None, "")), false).strict.is_empty());
}

#[test]
fn output_becomes_the_wire_events() {
    let d = ShapedDelta {
        text: "Hi".into(),
        reasoning: "hmm".into(),
        calls: vec![CallDelta { index: 1, id: "call_x".into(), name: "f".into(), arguments: "{\"a\"".into() }],
    };
    let Some(v1::generate_event::Event::Delta(w)) = convert::delta(d, vec![5, 6], &[]).event else { panic!() };
    assert_eq!((w.text.as_str(), w.reasoning_text.as_str(), w.token_ids.as_slice()), ("Hi", "hmm", &[5, 6][..]));
    assert_eq!((w.tool_calls[0].index, w.tool_calls[0].name.as_str()), (1, "f"));

    let usage = Usage { prompt_tokens: 3, completion_tokens: 4, cached_tokens: 1 };
    let timings = Timings {
        queued: Duration::from_millis(1),
        prefill: Duration::from_millis(2),
        decode: Duration::from_millis(3),
    };
    for (reason, stop, called, want) in [
        (FinishReason::Stop, None, false, v1::FinishReason::Stop),
        (FinishReason::Stop, Some("END"), false, v1::FinishReason::Stop),
        (FinishReason::Stop, None, true, v1::FinishReason::ToolCalls),
        (FinishReason::Length, None, true, v1::FinishReason::Length),
    ] {
        let end = convert::End { reason, stop: stop.map(String::from), called_tools: called, reasoning_tokens: 0 };
        let Some(v1::generate_event::Event::Finished(f)) = convert::finished(end, &usage, &timings).event else {
            panic!()
        };
        assert_eq!(f.reason, want as i32, "{reason:?} called={called}");
        assert_eq!(f.stop_sequence, stop.unwrap_or(""));
        assert_eq!(f.usage.unwrap().cached_tokens, 1);
    }
    let Some(v1::generate_event::Event::Started(s)) = convert::started("r", "m", 9, 4).event else { panic!() };
    assert_eq!((s.request_id.as_str(), s.model.as_str(), s.prompt_tokens, s.cached_tokens), ("r", "m", 9, 4));
}

#[test]
fn the_limits_both_ends_check_agree() {
    // The gateway checks the limits of zeta_proto::edge; the engine, which links no gRPC, has its own.
    assert_eq!(zeta_proto::edge::MAX_STOP_STRINGS, zeta_engine::MAX_STOP_STRINGS);
    assert_eq!(zeta_proto::edge::MAX_STOP_BYTES, zeta_engine::MAX_STOP_BYTES);
}
