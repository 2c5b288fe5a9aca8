//! The gateway's validation layer on its own, as TGI tests its router's: request bodies as
//! clients send them, through the one converter each endpoint uses, to the daemon's request or
//! to the 400 that names the parameter. No daemon, no MLX: each case runs in microseconds.

use serde_json::{Value, json};
use zeta_gateway::convert;
use zeta_gateway::dto::request::{ChatCompletionRequest, CompletionRequest, TokenizeRequest};
use zeta_gateway::error::ApiError;
use zeta_proto::v1;

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn chat(v: Value) -> Result<(v1::GenerateRequest, convert::ChatOptions), ApiError> {
    let dto: ChatCompletionRequest = convert::parse_body(&body(v))?;
    convert::chat(&dto, "req-1")
}

fn completion(v: Value) -> Result<(v1::GenerateRequest, convert::CompletionOptions), ApiError> {
    let dto: CompletionRequest = convert::parse_body(&body(v))?;
    convert::completion(&dto, "req-1")
}

fn with(extra: Value) -> Value {
    let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// (case, body, the parameter the 400 names)
fn bad_chats() -> Vec<(&'static str, Value, &'static str)> {
    let tools = json!([{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]);
    vec![
        ("no messages", json!({"model": "m"}), "messages"),
        ("empty messages", json!({"messages": []}), "messages"),
        ("messages a string", json!({"messages": "hi"}), "messages"),
        ("message not an object", json!({"messages": [5]}), "messages[0]"),
        ("unknown role", json!({"messages": [{"role": "wizard", "content": "x"}]}), "messages[0].role"),
        ("content a number", json!({"messages": [{"role": "user", "content": 5}]}), "messages[0].content"),
        (
            "image part",
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            "messages[0].content[0].type",
        ),
        (
            "tool message without id",
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id",
        ),
        ("model a number", with(json!({"model": 5})), "model"),
        ("model over 512 bytes", with(json!({"model": "m".repeat(513)})), "model"),
        ("temperature a string", with(json!({"temperature": "hot"})), "temperature"),
        ("temperature over 2", with(json!({"temperature": 2.5})), "temperature"),
        ("top_p zero", with(json!({"top_p": 0})), "top_p"),
        ("max_tokens zero", with(json!({"max_tokens": 0})), "max_tokens"),
        ("max_tokens fractional", with(json!({"max_tokens": 1.5})), "max_tokens"),
        ("max_completion_tokens negative", with(json!({"max_completion_tokens": -1})), "max_completion_tokens"),
        ("presence_penalty huge", with(json!({"presence_penalty": 1e9})), "presence_penalty"),
        ("logit_bias key not an id", with(json!({"logit_bias": {"x": 1}})), "logit_bias"),
        ("logit_bias key over u32", with(json!({"logit_bias": {"4294967297": 1}})), "logit_bias"),
        ("n = 3", with(json!({"n": 3})), "n"),
        ("unknown response format", with(json!({"response_format": {"type": "yaml"}})), "response_format.type"),
        (
            "json_schema without schema",
            with(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})),
            "response_format.json_schema.schema",
        ),
        (
            "schema over the size limit",
            with(
                json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {"description": "x".repeat(300_000)}}}}),
            ),
            "response_format.json_schema.schema",
        ),
        (
            "grammar and a json format",
            with(json!({"response_format": {"type": "json_object"}, "grammar": "start: \"a\""})),
            "grammar",
        ),
        ("17 stop strings", with(json!({"stop": vec!["x"; 17]})), "stop"),
        ("empty stop string", with(json!({"stop": ["a", ""]})), "stop[1]"),
        ("stream_options without stream", with(json!({"stream_options": {"include_usage": true}})), "stream_options"),
        ("top_logprobs without logprobs", with(json!({"top_logprobs": 2})), "top_logprobs"),
        ("top_logprobs over 20", with(json!({"logprobs": true, "top_logprobs": 21})), "top_logprobs"),
        ("tool_choice without tools", with(json!({"tool_choice": "required"})), "tool_choice"),
        (
            "tool_choice names no tool",
            with(json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "nope"}}})),
            "tool_choice",
        ),
        ("tool of another type", with(json!({"tools": [{"type": "code_interpreter"}]})), "tools[0].type"),
        (
            "tool without a name",
            with(json!({"tools": [{"type": "function", "function": {}}]})),
            "tools[0].function.name",
        ),
        ("functions", with(json!({"functions": [{"name": "f"}]})), "functions"),
        ("audio", with(json!({"audio": {"voice": "x"}})), "audio"),
        ("chat_template_kwargs a list", with(json!({"chat_template_kwargs": [1]})), "chat_template_kwargs"),
        ("unknown effort", with(json!({"reasoning_effort": "extreme"})), "reasoning_effort"),
    ]
}

#[test]
fn bad_chat_requests_are_400s_naming_the_parameter() {
    for (case, v, param) in bad_chats() {
        let e = chat(v).err().unwrap_or_else(|| panic!("{case}: accepted"));
        assert_eq!(e.status, 400, "{case}: {e:?}");
        assert_eq!(e.param.as_deref(), Some(param), "{case}: {}", e.message);
        assert!(!e.message.is_empty() && e.message.len() < 1024, "{case}: {}", e.message);
    }
}

#[test]
fn bodies_that_are_not_json_objects_are_400s_on_body() {
    for (case, raw) in [
        ("malformed", &b"{\"model\": "[..]),
        ("not an object", b"[1, 2]"),
        ("invalid UTF-8", b"{\"model\": \"\xff\"}"),
        ("NaN", b"{\"temperature\": NaN}"),
    ] {
        let e = convert::parse_body::<ChatCompletionRequest>(raw).err().unwrap_or_else(|| panic!("{case}"));
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some("body")), "{case}: {}", e.message);
    }
}

#[test]
fn a_good_chat_request_converts_field_by_field() {
    let tools = json!([{"type": "function", "function": {"name": "get_time", "description": "Now",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}]);
    let (req, opts) = chat(json!({
        "model": "qwen", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What time"}, {"type": "text", "text": "is it?"}]},
        ],
        "temperature": 0.2, "top_p": 0.9, "seed": 7, "max_completion_tokens": 64, "max_tokens": 9,
        "stop": "END", "logprobs": true, "top_logprobs": 3, "stream": true,
        "stream_options": {"include_usage": true}, "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "get_time"}}, "parallel_tool_calls": false,
        "logit_bias": {"42": -100}, "top_k": 5, "chat_template_kwargs": {"enable_thinking": false},
        "reasoning_effort": "high",
    }))
    .unwrap();
    assert_eq!(req.model, "qwen");
    assert_eq!(req.request_id, "req-1");
    let Some(v1::generate_request::Input::Chat(c)) = &req.input else { panic!("{req:?}") };
    assert_eq!(c.messages.len(), 2);
    assert_eq!(c.messages[1].content.as_deref(), Some("What time\nis it?"), "text parts are joined by lines");
    let s = req.sampling.as_ref().unwrap();
    assert_eq!((s.temperature, s.top_p, s.seed, s.top_k), (Some(0.2), Some(0.9), Some(7), Some(5)));
    assert_eq!(s.logit_bias.get(&42), Some(&-100.0));
    assert_eq!(req.max_tokens, Some(64), "max_completion_tokens wins over max_tokens");
    assert_eq!(req.stop, ["END"]);
    assert_eq!(req.logprobs, Some(3));
    assert_eq!(req.tools.len(), 1);
    assert_eq!(req.tool_choice.as_ref().map(|c| c.function.as_str()), Some("get_time"));
    assert!(req.separate_reasoning);
    // The effort reaches the template (gpt-oss reads `reasoning_effort`); explicit variables win.
    assert_eq!(
        serde_json::from_str::<Value>(&req.chat_template_kwargs_json).unwrap(),
        json!({"enable_thinking": false, "reasoning_effort": "high"})
    );
    assert!(opts.stream && opts.include_usage && opts.logprobs && opts.single_tool_call);
    assert_eq!(opts.model, "qwen");
}

#[test]
fn completion_prompts_and_their_errors() {
    let (req, opts) = completion(json!({"prompt": "Once"})).unwrap();
    assert_eq!(req.input, Some(v1::generate_request::Input::Prompt("Once".into())));
    // The legacy API's default, as a cap: a prompt near the context is not refused for it.
    assert_eq!((req.max_tokens, req.max_tokens_cap), (None, Some(16)), "the legacy API's default");
    assert!(!opts.stream && opts.model.is_empty());
    let (req, _) = completion(json!({"prompt": [1, 2, 3]})).unwrap();
    assert_eq!(req.input, Some(v1::generate_request::Input::PromptTokens(v1::TokenIds { ids: vec![1, 2, 3] })));
    let (req, _) = completion(json!({"prompt": [[4, 5]]})).unwrap();
    assert_eq!(req.input, Some(v1::generate_request::Input::PromptTokens(v1::TokenIds { ids: vec![4, 5] })));
    for (case, v, param) in [
        ("no prompt", json!({}), "prompt"),
        ("id over u32", json!({"prompt": [1, 4294967297u64]}), "prompt[1]"),
        ("negative id", json!({"prompt": [-1]}), "prompt[0]"),
        ("fractional id", json!({"prompt": [[1.5]]}), "prompt[0][0]"),
        ("several prompts", json!({"prompt": ["a", "b"]}), "prompt"),
        ("echo", json!({"prompt": "x", "echo": true}), "echo"),
        ("suffix", json!({"prompt": "x", "suffix": "y"}), "suffix"),
        ("best_of", json!({"prompt": "x", "best_of": 2}), "best_of"),
        ("logprobs over 5", json!({"prompt": "x", "logprobs": 6}), "logprobs"),
    ] {
        let e = completion(v).err().unwrap_or_else(|| panic!("{case}: accepted"));
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some(param)), "{case}: {}", e.message);
    }
}

#[test]
fn counting_converts_like_chat_and_ships_no_ids() {
    let count = |v: Value, ids: bool| {
        let dto: TokenizeRequest = convert::parse_body(&body(v)).unwrap();
        convert::tokenize(&dto, ids)
    };
    let r = count(json!({"text": "hello"}), false).unwrap();
    assert!(r.count_only && r.add_special_tokens);
    assert_eq!(r.input, Some(v1::tokenize_request::Input::Text("hello".into())));
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let r =
        count(json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": "required"}), true)
            .unwrap();
    assert!(!r.count_only && r.return_tokens);
    assert_eq!(r.tool_choice.map(|c| c.mode), Some(v1::tool_choice::Mode::Required as i32));
    for (case, v, param) in [
        ("neither", json!({}), "text"),
        ("both", json!({"text": "a", "messages": [{"role": "user", "content": "x"}]}), "messages"),
        ("text a number", json!({"text": 5}), "text"),
        ("bad role", json!({"messages": [{"role": "wizard", "content": "x"}]}), "messages[0].role"),
        (
            "tool_choice without tools",
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}),
            "tool_choice",
        ),
        ("model over 512 bytes", json!({"model": "m".repeat(600), "text": "x"}), "model"),
    ] {
        let e = count(v, false).err().unwrap_or_else(|| panic!("{case}: accepted"));
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some(param)), "{case}: {}", e.message);
    }
}

#[test]
fn anthropic_messages_convert_to_the_same_domain_request() {
    use zeta_gateway::anthropic::{self, MessagesRequest};
    let convert = |v: Value| {
        let dto: MessagesRequest = convert::parse_body(&body(v))?;
        anthropic::convert(&dto, "req-1")
    };
    let (req, opts) = convert(json!({
        "model": "m", "max_tokens": 50, "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                {"type": "text", "text": "And tomorrow?"}]},
        ],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"}, "stop_sequences": ["END"], "stream": true,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }))
    .unwrap();
    let Some(v1::generate_request::Input::Chat(c)) = &req.input else { panic!("{req:?}") };
    let roles: Vec<&str> = c.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "user"], "tool results come before the turn's text");
    assert_eq!(c.messages[0].content.as_deref(), Some("Be brief."));
    assert_eq!(c.messages[2].tool_calls[0].name, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&c.messages[2].tool_calls[0].arguments).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!((c.messages[3].tool_call_id.as_str(), c.messages[3].content.as_deref()), ("toolu_1", Some("18 C")));
    assert_eq!(req.max_tokens, Some(50));
    assert_eq!(req.stop, ["END"]);
    assert_eq!(req.tool_choice.as_ref().map(|t| t.mode), Some(v1::tool_choice::Mode::Required as i32));
    assert!(opts.stream && opts.thinking);
    for (case, v, param) in [
        ("no max_tokens", json!({"messages": [{"role": "user", "content": "x"}]}), "max_tokens"),
        (
            "system role in messages",
            json!({"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            "an image block",
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image"}]}]}),
            "messages[0].content[0].type",
        ),
        (
            "tool_result without id",
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}),
            "messages[0].content[0].tool_use_id",
        ),
        (
            "tool_choice names no tool",
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
            "tools": [{"name": "f"}], "tool_choice": {"type": "tool", "name": "g"}}),
            "tool_choice.name",
        ),
        (
            "17 stop sequences",
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stop_sequences": vec!["s"; 17]}),
            "stop_sequences",
        ),
    ] {
        let e = convert(v).err().unwrap_or_else(|| panic!("{case}: accepted"));
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some(param)), "{case}: {}", e.message);
        let body = anthropic::error_body(&e);
        assert_eq!(
            (body["type"].as_str(), body["error"]["type"].as_str()),
            (Some("error"), Some("invalid_request_error"))
        );
    }
}

#[test]
fn responses_convert_to_the_same_domain_request() {
    use zeta_gateway::responses::{self, ResponsesRequest};
    let convert = |v: Value| {
        let dto: ResponsesRequest = convert::parse_body(&body(v))?;
        responses::convert(&dto, "req-1")
    };
    let (req, opts) = convert(json!({
        "model": "m", "instructions": "Be brief.", "max_output_tokens": 50, "temperature": 0.5,
        "input": [
            {"role": "developer", "content": "Use tools."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": "{\"city\":\"Rome\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18 C"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "21 C"}]},
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "get_weather"}, "parallel_tool_calls": false,
        "reasoning": {"effort": "none", "summary": "auto"}, "store": false, "stream": true,
    }))
    .unwrap();
    let Some(v1::generate_request::Input::Chat(c)) = &req.input else { panic!("{req:?}") };
    let roles: Vec<&str> = c.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "system", "user", "assistant", "tool", "tool"], "parallel calls are one turn");
    assert_eq!(c.messages[3].tool_calls.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["call_1", "call_2"]);
    assert_eq!((c.messages[5].tool_call_id.as_str(), c.messages[5].content.as_deref()), ("call_2", Some("21 C")));
    assert_eq!((req.max_tokens, req.sampling.as_ref().and_then(|s| s.temperature)), (Some(50), Some(0.5)));
    assert_eq!(req.tool_choice.as_ref().map(|t| t.function.as_str()), Some("get_weather"));
    assert_eq!(req.chat_template_kwargs_json, r#"{"enable_thinking":false}"#);
    assert!(opts.stream && opts.summary && opts.single_tool_call);
    assert!(!req.truncate_oldest_turns);
    let (req, opts) = convert(json!({"input": "x", "truncation": "auto"})).unwrap();
    assert!(req.truncate_oldest_turns);
    assert_eq!(opts.echo["truncation"], "auto");
    let hi = || json!([{"role": "user", "content": "Hi"}]);
    for (case, v, param) in [
        ("no input", json!({"model": "m"}), "input"),
        ("only instructions", json!({"instructions": "x", "input": [{"role": "system", "content": "x"}]}), "input"),
        ("store true", json!({"input": "x", "store": true}), "store"),
        ("previous response", json!({"input": "x", "previous_response_id": "resp_1"}), "previous_response_id"),
        ("item reference", json!({"input": [{"type": "item_reference", "id": "x"}]}), "input[0].type"),
        ("call without id", json!({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}), "input[0]"),
        ("output without id", json!({"input": [{"type": "function_call_output", "output": "x"}]}), "input[0].call_id"),
        ("hosted tool", json!({"input": hi(), "tools": [{"type": "file_search"}]}), "tools[0].type"),
        ("bad tool name", json!({"input": hi(), "tools": [{"type": "function", "name": "a b"}]}), "tools[0].name"),
        ("required without tools", json!({"input": hi(), "tool_choice": "required"}), "tool_choice"),
        (
            "json schema without schema",
            json!({"input": hi(), "text": {"format": {"type": "json_schema"}}}),
            "text.format.schema",
        ),
        ("unknown format", json!({"input": hi(), "text": {"format": {"type": "yaml"}}}), "text.format.type"),
        ("bad effort", json!({"input": hi(), "reasoning": {"effort": 3}}), "reasoning.effort"),
        ("zero tokens", json!({"input": hi(), "max_output_tokens": 0}), "max_output_tokens"),
        ("unknown truncation", json!({"input": hi(), "truncation": "middle"}), "truncation"),
    ] {
        let e = convert(v).err().unwrap_or_else(|| panic!("{case}: accepted"));
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some(param)), "{case}: {}", e.message);
    }
}
