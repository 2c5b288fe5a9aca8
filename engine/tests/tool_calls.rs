//! Tool-call and reasoning parsing on real model-format text tokenized with real tokenizers, in
//! the streaming path: each output is encoded to token ids (the Qwen-style tiny tokenizer, whose
//! vocabulary has `<tool_call>`, `</tool_call>`, `<think>`, `</think>` as added tokens, for
//! Hermes; SmolLM2's GGUF tokenizer for Llama 3 and Mistral, where the markers are split over
//! many tokens), decoded token by token through `StreamDecoder`, and each piece fed through the
//! server's own `Shaper` (reasoning splitter, then tool parser).

mod common;

use serde_json::{Value, json};
use zeta_engine::tokenizer::{StreamDecoder, Tokenizer};
use zeta_engine::tools::{ForcedChoice, ShapedDelta, Shaper, ToolCallParser, ToolEvent, ToolFormat};
use zeta_engine::{LocalModel, ModelSource};

fn load(path: &std::path::Path) -> LocalModel {
    zeta_engine::load_local(&ModelSource::detect(path).unwrap(), &Default::default(), |_, _| {}).unwrap()
}

fn tools() -> Vec<String> {
    ["get_weather", "get_time"].iter().map(|s| s.to_string()).collect()
}

/// What came out of one streamed output.
#[derive(Debug, Default)]
struct Output {
    reasoning: String,
    content: String,
    /// (name, arguments parsed as JSON) per call, from the deltas.
    calls: Vec<(String, Value)>,
    malformed: bool,
    /// Per call: (piece its id and name came with, piece of its last argument fragment, fragments).
    timing: Vec<(usize, usize, usize)>,
    /// How many decoded pieces the output streamed as.
    pieces: usize,
}

/// Streams `text` as the model would generate it through the server's own [`Shaper`]. `think`:
/// split reasoning (starting inside it when `Some(true)`); `forced`: the forced call whose
/// opening is already in the prompt.
fn stream(
    tok: &Tokenizer,
    text: &str,
    format: ToolFormat,
    forced: Option<&ForcedChoice>,
    think: Option<bool>,
) -> Output {
    let ids = tok.encode(text, false).unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), text, "the tokenizer round-trips the output");
    let prefix = forced.map(|f| format.forced_prefix(f));
    let mut shaper = Shaper::new(Some(format), tools(), forced.zip(prefix.as_deref()), think);
    let mut out = Output::default();
    let mut args: Vec<String> = Vec::new();
    let mut ids_seen = Vec::new();
    let mut take = |d: ShapedDelta, piece: usize, out: &mut Output| {
        out.reasoning.push_str(&d.reasoning);
        out.content.push_str(&d.text);
        for c in d.calls {
            if !c.id.is_empty() {
                assert_eq!(c.index, args.len());
                assert!(c.id.starts_with("call_") && c.id.len() == 29 && !ids_seen.contains(&c.id), "{}", c.id);
                ids_seen.push(c.id);
                args.push(String::new());
                out.calls.push((c.name, Value::Null));
                out.timing.push((piece, piece, 0));
            }
            if !c.arguments.is_empty() {
                args[c.index].push_str(&c.arguments);
                out.timing[c.index].1 = piece;
                out.timing[c.index].2 += 1;
            }
        }
    };
    let mut decoder = StreamDecoder::new();
    for (n, &id) in ids.iter().enumerate() {
        let piece = decoder.push(tok, id).unwrap();
        take(shaper.push(&piece), n, &mut out);
    }
    let last = decoder.flush(tok).unwrap();
    take(shaper.push(&last), ids.len(), &mut out);
    match shaper.finish() {
        Ok(d) => take(d, ids.len(), &mut out),
        Err(e) => assert!(forced.is_some(), "only a forced call can fail: {e}"),
    }
    out.malformed = shaper.malformed();
    out.pieces = ids.len();
    for (call, a) in out.calls.iter_mut().zip(&args) {
        call.1 = serde_json::from_str(a).unwrap_or(Value::String(a.clone()));
    }
    if !out.malformed {
        // The non-streaming view agrees with the stream.
        let done: Vec<(String, Value)> = shaper
            .calls()
            .iter()
            .map(|c| (c.name.clone(), serde_json::from_str(&c.arguments).expect("arguments are JSON")))
            .collect();
        assert_eq!(done, out.calls);
    }
    out
}

fn call(name: &str, args: Value) -> (String, Value) {
    (name.to_string(), args)
}

/// Every call's name went out while its arguments were still coming, and its arguments came in
/// more than one fragment.
fn assert_streamed_incrementally(out: &Output) {
    for &(start, end, fragments) in &out.timing {
        assert!(start < end, "call started at piece {start}, its arguments ended at {end}");
        assert!(fragments > 1, "arguments came in {fragments} fragment(s) over {} pieces", out.pieces);
    }
}

#[test]
fn hermes_calls_through_the_qwen_tokenizer() {
    let model = load(&common::tiny("qwen2-f32"));
    let tok = &model.tokenizer;
    for marker in ["<tool_call>", "</tool_call>", "<think>", "</think>"] {
        assert!(tok.token_to_id(marker).is_some(), "{marker} is one token in this vocabulary");
    }
    let source = std::fs::read_to_string(common::tiny("qwen2-f32").join("tokenizer_config.json")).unwrap();
    let config: Value = serde_json::from_str(&source).unwrap();
    let template = config["chat_template"].as_str().unwrap();
    assert_eq!(ToolFormat::detect(template), Some(ToolFormat::Hermes));

    let text = "I'll check both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\", \"unit\": \"celsius\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"Europe/Zurich\"}}\n</tool_call>";
    let ids = tok.encode(text, false).unwrap();
    assert!(ids.contains(&tok.token_to_id("<tool_call>").unwrap()), "the marker arrives as one token");
    let out = stream(tok, text, ToolFormat::Hermes, None, None);
    assert_eq!(out.content, "I'll check both.\n");
    assert_eq!(
        out.calls,
        [
            call("get_weather", json!({"city": "Zürich", "unit": "celsius"})),
            call("get_time", json!({"tz": "Europe/Zurich"}))
        ]
    );
    assert!(!out.malformed);
    assert_streamed_incrementally(&out);

    // Plain answers stream through untouched.
    let plain = "No tools needed: 2 < 3, and <b>bold</b> isn't a tag we care about.";
    let out = stream(tok, plain, ToolFormat::Hermes, None, None);
    assert_eq!((out.content.as_str(), out.calls.len(), out.malformed), (plain, 0, false));

    // A broken call is given back as content.
    let broken = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": Paris}}\n</tool_call>";
    let out = stream(tok, broken, ToolFormat::Hermes, None, None);
    assert_eq!(out.content, broken);
    assert!(out.malformed);
}

#[test]
fn qwen3_reasoning_then_a_call() {
    let model = load(&common::tiny("qwen3-f32"));
    let tok = &model.tokenizer;
    let text = "<think>\nThe user wants the weather in Paris. I should call get_weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>";
    let out = stream(tok, text, ToolFormat::Hermes, None, Some(false));
    assert_eq!(out.reasoning, "The user wants the weather in Paris. I should call get_weather.");
    assert_eq!(out.content, "");
    assert_eq!(out.calls, [call("get_weather", json!({"city": "Paris", "unit": "celsius"}))]);
    assert_streamed_incrementally(&out);

    // The template opened `<think>` itself; the answer is plain text.
    let text = "Two plus two is four.\n</think>\n\nIt's 4.";
    let out = stream(tok, text, ToolFormat::Hermes, None, Some(true));
    assert_eq!((out.reasoning.as_str(), out.content.as_str()), ("Two plus two is four.", "It's 4."));
    assert!(out.calls.is_empty());
}

#[test]
fn forced_hermes_function() {
    let model = load(&common::tiny("qwen2-f32"));
    let forced = ForcedChoice::Function("get_time".into());
    let out =
        stream(&model.tokenizer, " {\"tz\": \"Asia/Tokyo\"}}\n</tool_call>", ToolFormat::Hermes, Some(&forced), None);
    assert_eq!(out.content, "");
    assert_eq!(out.calls, [call("get_time", json!({"tz": "Asia/Tokyo"}))]);
    assert_eq!(out.timing[0].0, 0, "the forced call starts with the first piece");
}

#[test]
fn llama3_and_mistral_through_the_smollm2_tokenizer() {
    let model = load(&common::smol_gguf());
    let tok = &model.tokenizer;
    for marker in ["<|python_tag|>", "[TOOL_CALLS]", "[ARGS]"] {
        assert!(tok.encode(marker, false).unwrap().len() > 1, "{marker} spans several tokens here");
    }
    let weather = json!({"city": "San Francisco", "unit": "fahrenheit"});
    let time = json!({"tz": "America/Los_Angeles"});

    let llama = "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"San Francisco\", \"unit\": \"fahrenheit\"}}; {\"name\": \"get_time\", \"parameters\": {\"tz\": \"America/Los_Angeles\"}}";
    let out = stream(tok, llama, ToolFormat::Llama3, None, None);
    assert_eq!((out.content.as_str(), out.malformed), ("", false));
    assert_eq!(out.calls, [call("get_weather", weather.clone()), call("get_time", time.clone())]);
    assert_streamed_incrementally(&out);

    // `<|python_tag|>` is a special token a decoder may drop: the bare JSON is still a call.
    let bare = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"San Francisco\", \"unit\": \"fahrenheit\"}}";
    let out = stream(tok, bare, ToolFormat::Llama3, None, None);
    assert_eq!(out.calls, [call("get_weather", weather.clone())]);
    for plain in ["The answer is {\"x\": 1}.", "{\"answer\": 42}", "Hello! How can I help you today?"] {
        let out = stream(tok, plain, ToolFormat::Llama3, None, None);
        assert_eq!((out.content.as_str(), out.calls.len(), out.malformed), (plain, 0, false));
    }
    let out = stream(
        tok,
        " \"get_time\", \"parameters\": {\"tz\": \"America/Los_Angeles\"}}",
        ToolFormat::Llama3,
        Some(&ForcedChoice::Required),
        None,
    );
    assert_eq!(out.calls, [call("get_time", time.clone())]);

    let list = "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"San Francisco\", \"unit\": \"fahrenheit\"}, \"id\": \"a1B2c3D4e\"}, {\"name\": \"get_time\", \"arguments\": {\"tz\": \"America/Los_Angeles\"}}]";
    let out = stream(tok, list, ToolFormat::Mistral, None, None);
    assert_eq!((out.content.as_str(), out.malformed), ("", false));
    assert_eq!(out.calls, [call("get_weather", weather.clone()), call("get_time", time.clone())]);
    assert_streamed_incrementally(&out);

    let v11 = "Let me look that up. [TOOL_CALLS]get_weather[ARGS]{\"city\": \"San Francisco\", \"unit\": \"fahrenheit\"}[TOOL_CALLS]get_time[ARGS]{\"tz\": \"America/Los_Angeles\"}";
    let out = stream(tok, v11, ToolFormat::Mistral, None, None);
    assert_eq!(out.content, "Let me look that up. ");
    assert_eq!(out.calls, [call("get_weather", weather), call("get_time", time)]);
    assert_streamed_incrementally(&out);

    let unknown = "[TOOL_CALLS]book_flight[ARGS]{\"to\": \"SFO\"}";
    let out = stream(tok, unknown, ToolFormat::Mistral, None, None);
    assert_eq!((out.content.as_str(), out.calls.len(), out.malformed), (unknown, 0, true));
}

#[test]
fn plain_text_is_held_back_only_at_a_possible_marker() {
    let model = load(&common::smol_gguf());
    let tok = &model.tokenizer;
    for (format, marker) in [
        (ToolFormat::Hermes, "<tool_call>"),
        (ToolFormat::Llama3, "<|python_tag|>"),
        (ToolFormat::Mistral, "[TOOL_CALLS]"),
    ] {
        let text = "Sure: use <tool_cal or <|python_ta or [TOOL_CALL when you must, a < b, [1].";
        let mut parser = ToolCallParser::new(format, tools());
        let mut decoder = StreamDecoder::new();
        let (mut fed, mut shown) = (String::new(), String::new());
        for id in tok.encode(text, false).unwrap() {
            let piece = decoder.push(tok, id).unwrap();
            fed.push_str(&piece);
            for e in parser.push(&piece) {
                let ToolEvent::Text(t) = e else { panic!("{format:?}: no calls here, got {e:?}") };
                shown.push_str(&t);
            }
            let held = fed.strip_prefix(shown.as_str()).expect("content is shown in order");
            assert!(held.is_empty() || marker.starts_with(held), "{format:?} held back {held:?}");
        }
        for e in parser.finish() {
            let ToolEvent::Text(t) = e else { panic!("{e:?}") };
            shown.push_str(&t);
        }
        assert_eq!(shown, text);
    }
}
