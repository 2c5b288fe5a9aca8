//! Chat templates render exactly as the Python reference (transformers' `apply_chat_template`,
//! jinja2): SmolLM2's template from the GGUF, the Qwen2.5 template with tools, assistant tool
//! calls and tool results, Gemma 3's, Phi-4-mini's and gpt-oss's harmony template. Streaming detokenization of CJK and emoji yields whole characters that
//! concatenate to the full decode, and the GGUF-built tokenizer encodes like the reference one.

mod common;

use serde_json::{Value, json};
use zeta_engine::tokenizer::StreamDecoder;
use zeta_engine::{ChatInput, ChatMessage, ChatTemplate, Engine, EngineOptions, FunctionCall, ModelSource, ToolCall};

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage { role: role.into(), content: Some(content.into()), ..Default::default() }
}

fn weather_tools() -> Vec<Value> {
    vec![
        json!({"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. Zürich"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}),
        json!({"type": "function", "function": {"name": "get_time", "description": "Local time",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}),
    ]
}

fn conversations() -> Vec<(Vec<ChatMessage>, Option<Vec<Value>>, bool)> {
    let call = |id: &str, name: &str, args: Value| ToolCall {
        id: id.into(),
        kind: "function".into(),
        function: FunctionCall { name: name.into(), arguments: args },
    };
    let tool_result = |id: &str, content: &str| ChatMessage {
        role: "tool".into(),
        content: Some(content.into()),
        tool_call_id: Some(id.into()),
        ..Default::default()
    };
    let assistant_calls = ChatMessage {
        role: "assistant".into(),
        content: None,
        tool_calls: vec![
            call("call_1", "get_weather", json!({"city": "Paris", "unit": "celsius"})),
            call("call_2", "get_time", json!({"tz": "Europe/Paris"})),
        ],
        ..Default::default()
    };
    vec![
        (vec![msg("user", "Hello!")], None, true),
        (
            vec![msg("system", "You are terse."), msg("user", "Hi"), msg("assistant", "Hello."), msg("user", "Bye")],
            None,
            true,
        ),
        (vec![msg("user", "What's the weather in Paris?")], Some(weather_tools()), true),
        (
            vec![
                msg("system", "Use tools when needed."),
                msg("user", "Weather and time in Paris?"),
                assistant_calls,
                tool_result("call_1", "{\"temp\": 18, \"sky\": \"clear\"}"),
                tool_result("call_2", "14:05"),
                msg("assistant", "It is 18°C and clear; the time is 14:05."),
                msg("user", "Thanks! 日本語で？"),
            ],
            Some(weather_tools()),
            true,
        ),
        (vec![msg("user", "no generation prompt")], None, false),
    ]
}

fn check_renders(
    engine: &Engine,
    reference_model: &std::path::Path,
    cases: Vec<(Vec<ChatMessage>, Option<Vec<Value>>, bool)>,
) {
    let tasks = cases
        .iter()
        .map(|(m, t, g)| {
            json!({"op": "chat_template", "model": reference_model, "messages": m, "tools": t, "add_generation_prompt": g})
        })
        .collect();
    let results = common::reference(tasks);
    for ((m, t, g), r) in cases.iter().zip(results) {
        let ours = engine
            .render_chat(&ChatInput {
                messages: m,
                tools: t.as_deref(),
                add_generation_prompt: *g,
                continue_final_message: false,
                extra: None,
            })
            .unwrap();
        assert_eq!(ours, r["text"].as_str().unwrap(), "conversation {m:?}");
    }
}

#[test]
fn qwen_template_with_tools_matches_transformers() {
    let dir = common::tiny("qwen2-f32");
    let engine = Engine::load(ModelSource::detect(&dir).unwrap(), EngineOptions::default(), |_, _| {}).unwrap();
    check_renders(&engine, &dir, conversations());
}

/// `continue_final_message` ends the prompt right after the final assistant message's text, as
/// transformers does; a conversation that does not end with one is refused, naming the field.
#[test]
fn continuing_the_final_assistant_message_matches_transformers() {
    let dir = common::tiny("qwen2-f32");
    let engine = Engine::load(ModelSource::detect(&dir).unwrap(), EngineOptions::default(), |_, _| {}).unwrap();
    let cases = [
        vec![msg("user", "Name a colour."), msg("assistant", "The colour is")],
        vec![
            msg("system", "Be brief."),
            msg("user", "Hi"),
            msg("assistant", "Hello."),
            msg("user", "Bye"),
            msg("assistant", "Good"),
        ],
    ];
    let tasks = cases
        .iter()
        .map(|m| json!({"op": "chat_template", "model": dir, "messages": m, "continue_final_message": true}))
        .collect();
    for (m, r) in cases.iter().zip(common::reference(tasks)) {
        let ours =
            engine.render_chat(&ChatInput { messages: m, continue_final_message: true, ..Default::default() }).unwrap();
        assert!(ours.ends_with(m.last().unwrap().content.as_deref().unwrap()), "{ours:?}");
        assert_eq!(ours, r["text"].as_str().unwrap(), "conversation {m:?}");
    }
    let refused = |m: &[ChatMessage], g: bool| {
        let input =
            ChatInput { messages: m, continue_final_message: true, add_generation_prompt: g, ..Default::default() };
        engine.render_chat(&input).unwrap_err().to_string()
    };
    let e = refused(&[msg("user", "Hi")], false);
    assert!(e.contains("continue_final_message") && e.contains("'user'"), "{e}");
    let e = refused(&cases[0], true);
    assert!(e.contains("add_generation_prompt"), "{e}");
}

/// Gemma 3's template (a system prompt folded into the first user turn, `model` for the
/// assistant, roles checked to alternate) and Phi-4-mini's, on the conversations they accept
/// (neither renders tool calls), and Phi-4-mini's with tools offered.
#[test]
fn family_templates_match_transformers() {
    for name in ["gemma3-f32", "phi3-f32"] {
        let dir = common::tiny(name);
        let engine = Engine::load(ModelSource::detect(&dir).unwrap(), EngineOptions::default(), |_, _| {}).unwrap();
        let cases: Vec<_> = conversations().into_iter().filter(|(m, t, _)| t.is_none() && m.len() != 3).collect();
        assert_eq!(cases.len(), 3);
        check_renders(&engine, &dir, cases);
    }
    // Phi-4-mini's template reads the tools from the system message, where the model card puts
    // them: with or without a system message of the caller's.
    let dir = common::tiny("phi3-f32");
    let engine = Engine::load(ModelSource::detect(&dir).unwrap(), EngineOptions::default(), |_, _| {}).unwrap();
    let question = msg("user", "What's the weather in Zürich?");
    let cases = [vec![question.clone()], vec![msg("system", "You are terse."), question]];
    let tasks = cases
        .iter()
        .map(|m| {
            json!({"op": "chat_template", "model": dir, "messages": m, "tools": weather_tools(),
                   "add_generation_prompt": true, "tools_in_system": true})
        })
        .collect();
    for (m, r) in cases.iter().zip(common::reference(tasks)) {
        let tools = weather_tools();
        let ours = engine
            .render_chat(&ChatInput {
                messages: m,
                tools: Some(&tools),
                add_generation_prompt: true,
                continue_final_message: false,
                extra: None,
            })
            .unwrap();
        assert_eq!(ours, r["text"].as_str().unwrap(), "conversation {m:?}");
        assert!(ours.contains("<|tool|>[{\"name\": \"get_weather\""), "{ours}");
    }
    // Roles that do not alternate are refused by Gemma's template, naming why.
    let engine =
        Engine::load(ModelSource::detect(&common::tiny("gemma3-f32")).unwrap(), EngineOptions::default(), |_, _| {})
            .unwrap();
    let twice = [msg("user", "a"), msg("user", "b")];
    let err = engine
        .render_chat(&ChatInput {
            messages: &twice,
            tools: None,
            add_generation_prompt: true,
            continue_final_message: false,
            extra: None,
        })
        .unwrap_err();
    assert!(err.to_string().contains("Conversation roles must alternate"), "{err}");
}

/// gpt-oss's harmony template (`tests/reference/templates/gpt-oss.jinja`, as published with the
/// model): the system header with the date and reasoning effort, the developer message with the
/// tools as a TypeScript namespace, a tool call on the commentary channel and its result, a
/// final answer, and a refused conversation, each as transformers renders it.
#[test]
fn gpt_oss_harmony_template_matches_transformers() {
    let path = common::root().join("tests/reference/templates/gpt-oss.jinja");
    let source = std::fs::read_to_string(&path).unwrap();
    let template = ChatTemplate::new(&source, Some("<|startoftext|>".into()), Some("<|return|>".into())).unwrap();
    // The template takes one call per assistant message and no content beside it.
    let cases: Vec<_> = conversations()
        .into_iter()
        .map(|(mut m, t, g)| {
            for message in &mut m {
                message.tool_calls.truncate(1);
                if !message.tool_calls.is_empty() {
                    message.content = Some(String::new());
                }
            }
            m.retain(|x| x.tool_call_id.as_deref() != Some("call_2"));
            (m, t, g)
        })
        .collect();
    let efforts = [None, Some("high"), Some("low"), None, None];
    let reference_model = common::tiny("gpt_oss-f32");
    let tasks = cases
        .iter()
        .zip(efforts)
        .map(|((m, t, g), effort)| {
            let kwargs = effort.map(|e| json!({"reasoning_effort": e})).unwrap_or(json!({}));
            json!({"op": "chat_template", "model": reference_model, "template": path, "messages": m, "tools": t,
                   "add_generation_prompt": g, "kwargs": kwargs})
        })
        .collect();
    let results = common::reference(tasks);
    for (((m, t, g), effort), r) in cases.iter().zip(efforts).zip(results) {
        let extra: serde_json::Map<String, Value> =
            effort.map(|e| [("reasoning_effort".to_string(), json!(e))].into_iter().collect()).unwrap_or_default();
        let ours = template
            .render(&ChatInput {
                messages: m,
                tools: t.as_deref(),
                add_generation_prompt: *g,
                continue_final_message: false,
                extra: Some(&extra),
            })
            .unwrap();
        assert_eq!(ours, r["text"].as_str().unwrap(), "conversation {m:?}");
        assert!(ours.starts_with("<|start|>system<|message|>"), "{ours}");
    }
    // A tool result with no call before it is the template's own error, passed on.
    let stray = [ChatMessage { role: "tool".into(), content: Some("18".into()), ..Default::default() }];
    let err = template
        .render(&ChatInput {
            messages: &stray,
            tools: None,
            add_generation_prompt: true,
            continue_final_message: false,
            extra: None,
        })
        .unwrap_err();
    assert!(err.to_string().contains("no previous assistant message with a tool call"), "{err}");
}

#[test]
fn smollm2_template_matches_transformers() {
    let engine = Engine::load(ModelSource::Gguf(common::smol_gguf()), EngineOptions::default(), |_, _| {}).unwrap();
    let cases = conversations().into_iter().filter(|(_, tools, _)| tools.is_none()).collect();
    check_renders(&engine, &common::smol_mlx(), cases);
}

const TEXTS: [&str; 5] = [
    "日本語のテキストと絵文字 🎉🚀、中文混合 English。",
    "한국어도 됩니다 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵",
    "Ünïcödé àccents, tabs\tand\nnewlines, numbers 1234567 and code: fn main() { println!(\"hi\"); }",
    "Emoji only: 😀😃😄😁😆😅🤣😂🙂🙃",
    "  leading spaces and trailing   ",
];

#[test]
fn streaming_detokenization_yields_whole_characters() {
    let gguf = zeta_engine::load_local(
        &ModelSource::Gguf(common::smol_gguf()),
        &zeta_engine::LoadOptions::default(),
        |_, _| {},
    )
    .unwrap();
    let tiny = zeta_engine::load_local(
        &ModelSource::detect(&common::tiny("qwen2-f32")).unwrap(),
        &Default::default(),
        |_, _| {},
    )
    .unwrap();
    for tok in [&gguf.tokenizer, &tiny.tokenizer] {
        for text in TEXTS {
            let ids = tok.encode(text, false).unwrap();
            let mut d = StreamDecoder::new();
            let mut out = String::new();
            let mut split_chars = 0;
            for &id in &ids {
                let piece = d.push(tok, id).unwrap();
                assert!(!piece.contains('\u{FFFD}'), "piece {piece:?} of {text:?} holds a broken character");
                if piece.is_empty() {
                    split_chars += 1;
                }
                out.push_str(&piece);
            }
            out.push_str(&d.flush(tok).unwrap());
            assert_eq!(out, tok.decode(&ids).unwrap(), "stream vs full decode of {text:?}");
            assert_eq!(out, text, "round trip");
            if text.starts_with("Emoji") {
                assert!(split_chars > 0, "emoji should span several byte-level tokens");
            }
        }
    }
}

#[test]
fn gguf_tokenizer_encodes_like_the_reference() {
    let m = zeta_engine::load_local(&ModelSource::Gguf(common::smol_gguf()), &Default::default(), |_, _| {}).unwrap();
    let dir = common::smol_mlx();
    let tasks = TEXTS
        .iter()
        .chain(["<|im_start|>user\nHi<|im_end|>\n"].iter())
        .map(|t| json!({"op": "encode", "model": dir, "text": t, "add_special_tokens": false}))
        .collect();
    let results = common::reference(tasks);
    for (text, r) in TEXTS.iter().chain(["<|im_start|>user\nHi<|im_end|>\n"].iter()).zip(results) {
        assert_eq!(m.tokenizer.encode(text, false).unwrap(), common::ids(&r["ids"]), "{text:?}");
    }
}

/// A SentencePiece vocabulary in GGUF (as llama.cpp writes Llama 2, Mistral and Mixtral files
/// with a dummy prefix, and Gemma files without: pieces, scores, token types) encodes as
/// SentencePiece itself does, decodes back, and prepends BOS when the file asks.
#[test]
fn sentencepiece_gguf_tokenizer_encodes_like_sentencepiece() {
    let dir = common::root().join("target/tmp/models/spm");
    common::run_script("make_spm_gguf.py", &[&dir]);
    for name in ["spm", "spm-noprefix"] {
        let path = dir.join(format!("{name}.gguf"));
        let g = mlx::Gguf::load(&path).unwrap();
        let tok = zeta_engine::tokenizer::Tokenizer::from_gguf(&g, &path).unwrap();
        let expected: Vec<Value> =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.expected.json"))).unwrap()).unwrap();
        for e in &expected {
            let text = e["text"].as_str().unwrap();
            let ids = common::ids(&e["ids"]);
            assert_eq!(tok.encode(text, false).unwrap(), ids, "{name}: encode {text:?}");
            assert_eq!(tok.decode(&ids).unwrap(), text, "{name}: decode {text:?}");
            let mut with_bos = vec![1];
            with_bos.extend(&ids);
            assert_eq!(tok.encode(text, true).unwrap(), with_bos, "{name}: BOS for {text:?}");
        }
        assert_eq!(tok.bos_token.as_deref(), Some("<s>"));
    }
}
