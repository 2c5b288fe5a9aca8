//! Tests of the tool-call parser: every format fed whole, one character at a time, cut at every
//! point and cut at random, must produce the same content and calls; plus holdback, malformed
//! calls and forced prefixes.

use super::*;

const TOOLS: [&str; 3] = ["get_weather", "get_time", "search"];

fn names() -> Vec<String> {
    TOOLS.iter().map(|s| s.to_string()).collect()
}

/// What a whole output parsed to.
#[derive(Debug, Clone, PartialEq)]
struct Parsed {
    content: String,
    /// (name, arguments text) in call order, from the events.
    calls: Vec<(String, String)>,
    malformed: bool,
    saw_calls: bool,
}

/// Folds events into content and calls, checking the event grammar on the way: indices in
/// order, arguments only inside their call, every start ended.
fn fold(events: &[ToolEvent], p: &mut Parsed, open: &mut Option<usize>, ids: &mut Vec<String>) {
    for e in events {
        match e {
            ToolEvent::Text(t) => {
                assert!(!t.is_empty(), "empty Text event");
                assert!(open.is_none(), "Text inside call {open:?}");
                p.content.push_str(t);
            }
            ToolEvent::CallStart { index, id, name } => {
                assert!(open.is_none(), "call {index} starts inside call {open:?}");
                assert_eq!(*index, ids.len(), "indices count from 0");
                assert!(id.starts_with("call_") && id.len() == 29, "{id}");
                assert!(id[5..].chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
                assert!(!ids.contains(id), "duplicate id {id}");
                ids.push(id.clone());
                *open = Some(*index);
                p.calls.push((name.clone(), String::new()));
            }
            ToolEvent::CallArgs { index, fragment } => {
                assert_eq!(*open, Some(*index), "arguments outside their call");
                assert!(!fragment.is_empty(), "empty CallArgs");
                p.calls[*index].1.push_str(fragment);
            }
            ToolEvent::CallEnd { index } => {
                assert_eq!(*open, Some(*index), "end of a call that isn't open");
                *open = None;
            }
        }
    }
}

fn parse_pieces(format: ToolFormat, prefix: Option<&str>, pieces: &[&str]) -> Parsed {
    let mut parser = match prefix {
        Some(pre) => ToolCallParser::with_prefix(format, names(), pre),
        None => ToolCallParser::new(format, names()),
    };
    let mut p = Parsed { content: String::new(), calls: Vec::new(), malformed: false, saw_calls: false };
    let (mut open, mut ids) = (None, Vec::new());
    for piece in pieces {
        fold(&parser.push(piece), &mut p, &mut open, &mut ids);
    }
    fold(&parser.finish(), &mut p, &mut open, &mut ids);
    assert_eq!(open, None, "a call was left open");
    p.malformed = parser.malformed();
    p.saw_calls = parser.saw_calls();
    // Completed calls, for non-streaming responses, match the streamed ones that completed.
    let done: Vec<(String, String)> = parser.calls().iter().map(|c| (c.name.clone(), c.arguments.clone())).collect();
    if !p.malformed {
        assert_eq!(done, p.calls);
        assert!(parser.calls().iter().all(|c| ids.contains(&c.id)));
    }
    for (_, args) in &done {
        let v: serde_json::Value = serde_json::from_str(args).expect("completed arguments are JSON");
        assert!(v.is_object());
    }
    p
}

/// A tiny deterministic generator for random cut points.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The ways of cutting `text` every test tries: whole, one char at a time, in two at every point,
/// and twenty random cuttings into pieces of 1 to 8 bytes (on char boundaries).
fn cuttings(text: &str) -> Vec<Vec<&str>> {
    let cuts: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
    let mut out = vec![vec![text], cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect()];
    for &i in &cuts {
        out.push(vec![&text[..i], &text[i..]]);
    }
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ text.len() as u64);
    for _ in 0..20 {
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < text.len() {
            let mut end = (at + 1 + rng.below(8)).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            pieces.push(&text[at..end]);
            at = end;
        }
        out.push(pieces);
    }
    out
}

/// Parses `text` every way and checks all agree; returns the result.
fn parse_all(format: ToolFormat, prefix: Option<&str>, text: &str) -> Parsed {
    let whole = parse_pieces(format, prefix, &[text]);
    for pieces in cuttings(text) {
        assert_eq!(parse_pieces(format, prefix, &pieces), whole, "{format:?} cut as {pieces:?}");
    }
    whole
}

fn call(name: &str, args: &str) -> (String, String) {
    (name.to_string(), args.to_string())
}

fn ok(content: &str, calls: Vec<(String, String)>) -> Parsed {
    Parsed { content: content.into(), saw_calls: !calls.is_empty(), calls, malformed: false }
}

fn bad(content: &str, calls: Vec<(String, String)>, saw_calls: bool) -> Parsed {
    Parsed { content: content.into(), calls, malformed: true, saw_calls }
}

const WEATHER: &str = r#"{"city": "Paris", "unit": "celsius"}"#;

#[test]
fn hermes_calls_text_and_whitespace() {
    let one = format!("<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {WEATHER}}}\n</tool_call>");
    assert_eq!(parse_all(ToolFormat::Hermes, None, &one), ok("", vec![call("get_weather", WEATHER)]));
    let two = format!(
        "Let me check.\n\n{one}\n<tool_call>\n{{\"name\": \"get_time\", \"arguments\": {{\"tz\": \"Europe/Paris\"}}}}\n</tool_call>"
    );
    assert_eq!(
        parse_all(ToolFormat::Hermes, None, &two),
        ok("Let me check.\n\n", vec![call("get_weather", WEATHER), call("get_time", r#"{"tz": "Europe/Paris"}"#)])
    );
    let after = format!("{one}\n\nDone, see above.");
    assert_eq!(
        parse_all(ToolFormat::Hermes, None, &after),
        ok("\n\nDone, see above.", vec![call("get_weather", WEATHER)])
    );
    // No closing tag before the end, arguments before the name, nested and escaped arguments.
    let loose =
        r#"<tool_call>{"arguments": {"q": "caf\u00e9 😀 \"x\" {[", "n": [1, -2.5e3, {"k": null}]}, "name": "search"}"#;
    assert_eq!(
        parse_all(ToolFormat::Hermes, None, loose),
        ok("", vec![call("search", r#"{"q": "caf\u00e9 😀 \"x\" {[", "n": [1, -2.5e3, {"k": null}]}"#)])
    );
    let no_args = "<tool_call>\n{\"name\": \"get_time\"}\n</tool_call>";
    assert_eq!(parse_all(ToolFormat::Hermes, None, no_args), ok("", vec![call("get_time", "{}")]));
    let stringly = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": \"{\\\"tz\\\": \\\"UTC\\\"}\"}\n</tool_call>";
    assert_eq!(parse_all(ToolFormat::Hermes, None, stringly), ok("", vec![call("get_time", r#"{"tz": "UTC"}"#)]));
}

#[test]
fn hermes_text_that_only_looks_like_a_marker() {
    let text = "Tags like <tool_calls>, <b>bold</b>, <tool and a < sign; ends with <tool_ca";
    assert_eq!(parse_all(ToolFormat::Hermes, None, text), ok(text, vec![]));
    assert_eq!(parse_all(ToolFormat::Hermes, None, ""), ok("", vec![]));
}

#[test]
fn hermes_malformed_calls_become_content() {
    let bad_json = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": Paris}}\n</tool_call>";
    assert_eq!(
        parse_all(ToolFormat::Hermes, None, bad_json),
        bad(bad_json, vec![call("get_weather", "{\"city\": ")], true)
    );
    let unknown = "<tool_call>\n{\"name\": \"launch_rockets\", \"arguments\": {}}\n</tool_call>";
    assert_eq!(parse_all(ToolFormat::Hermes, None, unknown), bad(unknown, vec![], false));
    let not_json = "<tool_call>\nget_weather(city=\"Paris\")\n</tool_call>";
    assert_eq!(parse_all(ToolFormat::Hermes, None, not_json), bad(not_json, vec![], false));
    let cut = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par";
    assert_eq!(parse_all(ToolFormat::Hermes, None, cut), bad(cut, vec![call("get_weather", "{\"city\": \"Par")], true));
    // A broken call doesn't stop the next one.
    let then_good = format!("{unknown}\n<tool_call>\n{{\"name\": \"get_time\", \"arguments\": {{}}}}\n</tool_call>");
    assert_eq!(
        parse_all(ToolFormat::Hermes, None, &then_good),
        bad(&format!("{unknown}\n"), vec![call("get_time", "{}")], true)
    );
}

#[test]
fn llama3_json_calls() {
    let one = format!("{{\"name\": \"get_weather\", \"parameters\": {WEATHER}}}");
    assert_eq!(parse_all(ToolFormat::Llama3, None, &one), ok("", vec![call("get_weather", WEATHER)]));
    let two = format!("<|python_tag|>{one}; {{\"name\": \"get_time\", \"parameters\": {{\"tz\": \"UTC\"}}}}");
    assert_eq!(
        parse_all(ToolFormat::Llama3, None, &two),
        ok("", vec![call("get_weather", WEATHER), call("get_time", r#"{"tz": "UTC"}"#)])
    );
    let typed = "\n {\"type\": \"function\", \"name\": \"get_time\", \"parameters\": {\"tz\": \"UTC\"}}";
    assert_eq!(parse_all(ToolFormat::Llama3, None, typed), ok("", vec![call("get_time", r#"{"tz": "UTC"}"#)]));
    let after_text = "Sure.<|python_tag|>{\"name\": \"get_time\", \"parameters\": {}}";
    assert_eq!(parse_all(ToolFormat::Llama3, None, after_text), ok("Sure.", vec![call("get_time", "{}")]));
}

#[test]
fn llama3_plain_answers_stay_content() {
    for text in [
        "The weather in Paris is mild. {\"name\": \"get_time\"} is how you'd call it.",
        "{\"answer\": 42}",
        "{\"name\": \"John\", \"age\": 30}",
        "  {not json at all",
        "[1, 2, 3] <|python",
    ] {
        assert_eq!(parse_all(ToolFormat::Llama3, None, text), ok(text, vec![]), "{text}");
    }
    let builtin = "<|python_tag|>brave_search.call(query=\"x\")";
    assert_eq!(parse_all(ToolFormat::Llama3, None, builtin), bad(builtin, vec![], false));
}

#[test]
fn mistral_both_forms() {
    let list = r#"[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123XYZ"}, {"name": "get_time", "arguments": {"tz": "UTC"}}]"#;
    let both = vec![call("get_weather", r#"{"city": "Paris"}"#), call("get_time", r#"{"tz": "UTC"}"#)];
    assert_eq!(parse_all(ToolFormat::Mistral, None, list), ok("", both.clone()));
    let v11 = r#"[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{"tz": "UTC"}"#;
    assert_eq!(parse_all(ToolFormat::Mistral, None, v11), ok("", both.clone()));
    let with_id = r#"Checking. [TOOL_CALLS]get_time[CALL_ID]a1b2c3d4e[ARGS]{"tz": "UTC"}"#;
    assert_eq!(parse_all(ToolFormat::Mistral, None, with_id), ok("Checking. ", vec![both[1].clone()]));
    // Decoders that drop special tokens leave the list without its marker, or `name{…}`.
    let stripped = r#" [{"name": "get_time", "arguments": {"tz": "UTC"}}]"#;
    assert_eq!(parse_all(ToolFormat::Mistral, None, stripped), ok("", vec![both[1].clone()]));
    let no_args_tag = r#"[TOOL_CALLS]get_time{"tz": "UTC"}"#;
    assert_eq!(parse_all(ToolFormat::Mistral, None, no_args_tag), ok("", vec![both[1].clone()]));
    let single = r#"[TOOL_CALLS] {"name": "get_time", "arguments": {"tz": "UTC"}}"#;
    assert_eq!(parse_all(ToolFormat::Mistral, None, single), ok("", vec![both[1].clone()]));
}

#[test]
fn mistral_content_and_malformed() {
    for text in ["[1] is a citation.", "[{\"answer\": 1}]", "Use [TOOL_CALL] or [TOOL_CALLS", "[ "] {
        assert_eq!(parse_all(ToolFormat::Mistral, None, text), ok(text, vec![]), "{text}");
    }
    let unknown = r#"[TOOL_CALLS]nope[ARGS]{"a": 1}"#;
    assert_eq!(parse_all(ToolFormat::Mistral, None, unknown), bad(unknown, vec![], false));
    let junk = "[TOOL_CALLS]get time";
    assert_eq!(parse_all(ToolFormat::Mistral, None, junk), bad(junk, vec![], false));
    let cut = "[TOOL_CALLS]get_time[AR";
    assert_eq!(parse_all(ToolFormat::Mistral, None, cut), bad(cut, vec![], false));
}

#[test]
fn phi4_mini_lists_after_either_marker() {
    let both = vec![call("get_weather", r#"{"city": "Paris"}"#), call("get_time", r#"{"tz": "UTC"}"#)];
    let list = r#"[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {"tz": "UTC"}}]"#;
    let tagged = format!("<|tool_call|>{list}<|/tool_call|>");
    assert_eq!(parse_all(ToolFormat::Phi4Mini, None, &tagged), ok("", both.clone()));
    let functools = format!("Let me check. functools{list}");
    assert_eq!(parse_all(ToolFormat::Phi4Mini, None, &functools), ok("Let me check. ", both.clone()));
    let after = format!("<|tool_call|> {list} <|/tool_call|> Done.");
    assert_eq!(parse_all(ToolFormat::Phi4Mini, None, &after), ok(" Done.", both.clone()));
    // Prose about the module, and lists that are not calls, stay content.
    for text in ["Use functools.partial here.", "functools [sic]", "[{\"name\": \"get_time\"}]", "<|tool|>"] {
        assert_eq!(parse_all(ToolFormat::Phi4Mini, None, text), ok(text, vec![]), "{text}");
    }
    let unknown = r#"<|tool_call|>[{"name": "nope", "arguments": {}}]"#;
    assert_eq!(parse_all(ToolFormat::Phi4Mini, None, unknown), bad(unknown, vec![], false));
    let pre = ToolFormat::Phi4Mini.forced_prefix(&ForcedChoice::Function("get_time".into()));
    assert_eq!(
        parse_all(ToolFormat::Phi4Mini, Some(&pre), " {\"tz\": \"UTC\"}}]<|/tool_call|>"),
        ok("", vec![both[1].clone()])
    );
}

#[test]
fn forced_prefixes() {
    let named = ForcedChoice::Function("get_weather".into());
    let tail = format!(" {WEATHER}}}\n</tool_call>");
    let pre = ToolFormat::Hermes.forced_prefix(&named);
    assert_eq!(pre, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\":");
    assert_eq!(parse_all(ToolFormat::Hermes, Some(&pre), &tail), ok("", vec![call("get_weather", WEATHER)]));
    let pre = ToolFormat::Hermes.forced_prefix(&ForcedChoice::Required);
    let tail = "{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
    assert_eq!(parse_all(ToolFormat::Hermes, Some(&pre), tail), ok("", vec![call("get_time", "{}")]));

    let pre = ToolFormat::Llama3.forced_prefix(&named);
    assert_eq!(
        parse_all(ToolFormat::Llama3, Some(&pre), &format!(" {WEATHER}}}")),
        ok("", vec![call("get_weather", WEATHER)])
    );
    let pre = ToolFormat::Llama3.forced_prefix(&ForcedChoice::Required);
    let tail = " \"get_time\", \"parameters\": {}}";
    assert_eq!(parse_all(ToolFormat::Llama3, Some(&pre), tail), ok("", vec![call("get_time", "{}")]));

    let pre = ToolFormat::Mistral.forced_prefix(&named);
    assert_eq!(
        parse_all(ToolFormat::Mistral, Some(&pre), &format!(" {WEATHER}}}]")),
        ok("", vec![call("get_weather", WEATHER)])
    );
    let pre = ToolFormat::Mistral.forced_prefix(&ForcedChoice::Required);
    assert_eq!(parse_all(ToolFormat::Mistral, Some(&pre), "get_time[ARGS]{}"), ok("", vec![call("get_time", "{}")]));
    assert_eq!(
        parse_all(ToolFormat::Mistral, Some(&pre), "[{\"name\": \"get_time\", \"arguments\": {}}]"),
        ok("", vec![call("get_time", "{}")])
    );

    // The forced call starts before the model writes anything; if it then writes junk, the call
    // ends, the junk is content, and the output is malformed.
    let pre = ToolFormat::Hermes.forced_prefix(&named);
    let mut p = ToolCallParser::with_prefix(ToolFormat::Hermes, names(), &pre);
    let ev = p.push("I won't");
    assert!(matches!(&ev[0], ToolEvent::CallStart { index: 0, name, .. } if name == "get_weather"), "{ev:?}");
    assert_eq!(ev[1..], [ToolEvent::CallEnd { index: 0 }, ToolEvent::Text("I won't".into())]);
    assert!(p.malformed() && p.calls().is_empty() && p.saw_calls());
    // Refusing to pick a tool under `required` is malformed too, and nothing of the prompt leaks.
    let pre = ToolFormat::Llama3.forced_prefix(&ForcedChoice::Required);
    assert_eq!(parse_all(ToolFormat::Llama3, Some(&pre), " \"sorry\"}"), bad(" \"sorry\"}", vec![], false));
    // The prefix yields events only where it names the call.
    let mut p = ToolCallParser::new(ToolFormat::Hermes, names());
    assert!(p.push_prompt_prefix("<tool_call>\n").is_empty());
    let ev =
        ToolCallParser::new(ToolFormat::Llama3, names()).push_prompt_prefix("{\"name\": \"get_time\", \"parameters\":");
    assert!(matches!(&ev[..], [ToolEvent::CallStart { name, .. }] if name == "get_time"));
}

#[test]
fn text_streams_with_minimal_holdback() {
    let mut p = ToolCallParser::new(ToolFormat::Hermes, names());
    assert_eq!(p.push("Hello"), [ToolEvent::Text("Hello".into())]);
    assert_eq!(p.push(" <tool"), [ToolEvent::Text(" ".into())]);
    assert_eq!(p.push("s>"), [ToolEvent::Text("<tools>".into())]);
    assert_eq!(p.push(" <tool_call"), [ToolEvent::Text(" ".into())]);
    let ev = p.push(">\n{\"name\": \"get_time\", \"argu");
    assert!(matches!(&ev[..], [ToolEvent::CallStart { index: 0, name, .. }] if name == "get_time"), "{ev:?}");
    assert_eq!(p.push("ments\": {\"tz\":"), [ToolEvent::CallArgs { index: 0, fragment: "{\"tz\":".into() }]);
    assert_eq!(p.push(" \"UTC\"}"), [ToolEvent::CallArgs { index: 0, fragment: " \"UTC\"}".into() }]);
    assert_eq!(p.push("}"), [ToolEvent::CallEnd { index: 0 }]);
    assert!(p.push("\n</tool_call>\n").is_empty());
    assert!(p.finish().is_empty());
    assert_eq!(p.calls().len(), 1);
    assert_eq!(p.calls()[0].arguments, "{\"tz\": \"UTC\"}");
    assert!(!p.malformed());

    // Llama 3: ordinary text is released at once; only leading whitespace waits.
    let mut p = ToolCallParser::new(ToolFormat::Llama3, names());
    assert!(p.push("\n ").is_empty());
    assert_eq!(p.push("Hi"), [ToolEvent::Text("\n Hi".into())]);
}

#[test]
fn detects_formats_from_templates() {
    let qwen = include_str!("../../../tests/reference/templates/qwen2.5.jinja");
    assert_eq!(ToolFormat::detect(qwen), Some(ToolFormat::Hermes));
    let chatml = include_str!("../../../tests/reference/templates/chatml.jinja");
    assert_eq!(ToolFormat::detect(chatml), None);
    let llama = "{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' }}{%- if builtin_tools %}<|python_tag|>";
    assert_eq!(ToolFormat::detect(llama), Some(ToolFormat::Llama3));
    let llama32 = "<|start_header_id|>user<|end_header_id|> {\"name\": function name, \"parameters\": dictionary}";
    assert_eq!(ToolFormat::detect(llama32), Some(ToolFormat::Llama3));
    let mistral = "{%- if message.tool_calls %}{{- \"[TOOL_CALLS][\" }}{%- endif %}[AVAILABLE_TOOLS]";
    assert_eq!(ToolFormat::detect(mistral), Some(ToolFormat::Mistral));
    let phi4 = include_str!("../../../tests/reference/templates/phi4-mini.jinja");
    assert_eq!(ToolFormat::detect(phi4), Some(ToolFormat::Phi4Mini));
}

#[test]
fn call_ids_are_unique() {
    let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_call_id()).collect();
    assert_eq!(ids.len(), 1000);
}

/// Random outputs built from calls, truncated calls, text and marker debris: however they are
/// cut, the parser must agree with itself and never break the event grammar.
#[test]
fn random_outputs_parse_the_same_however_cut() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let debris = [
        "<tool",
        "_call>",
        "</tool_call>",
        "<|python_tag|>",
        "<|py",
        "[TOOL_CALLS]",
        "[TOOL_CALLS][",
        "[TOOL_CALLS] [ ",
        "[TOOL",
        "[ARGS]",
        "[CALL_ID]",
        "<|tool_call|>",
        "<|/tool_call|>",
        "functools",
        "functools[",
        "<|tool",
        "{",
        "}",
        "[",
        "]",
        "\"",
        "\\",
        ":",
        ",",
        ";",
        " ",
        "\n",
        "\"name\"",
        "\"get_time\"",
        "\"arguments\"",
        "\"parameters\"",
        "get_time",
        "nope",
        "Hello",
        "é😀",
        "1",
        "null",
    ];
    for format in [ToolFormat::Hermes, ToolFormat::Llama3, ToolFormat::Mistral, ToolFormat::Phi4Mini] {
        let calls = [
            match format {
                ToolFormat::Hermes => {
                    "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}\n</tool_call>"
                }
                ToolFormat::Llama3 => "{\"name\": \"get_time\", \"parameters\": {\"tz\": \"UTC\"}}",
                ToolFormat::Mistral => "[TOOL_CALLS]get_time[ARGS]{\"tz\": \"UTC\"}",
                ToolFormat::Phi4Mini => {
                    "<|tool_call|>[{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}]<|/tool_call|>"
                }
            },
            match format {
                ToolFormat::Hermes => {
                    "<tool_call>{\"arguments\": {\"q\": [1, \"}\"]}, \"name\": \"search\"}</tool_call>"
                }
                ToolFormat::Llama3 => "<|python_tag|>{\"name\": \"search\", \"parameters\": {\"q\": \"a;b\"}}; ",
                ToolFormat::Mistral => "[TOOL_CALLS][{\"name\": \"search\", \"arguments\": {\"q\": \"]\"}}]",
                ToolFormat::Phi4Mini => "functools[{\"name\": \"search\", \"arguments\": {\"q\": \"]\"}}]",
            },
        ];
        for _ in 0..500 {
            let mut text = String::new();
            for _ in 0..1 + rng.below(4) {
                match rng.below(4) {
                    0 => text.push_str(calls[rng.below(2)]),
                    1 => {
                        let c = calls[rng.below(2)];
                        let mut cut = rng.below(c.len());
                        while !c.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text.push_str(&c[..cut]);
                    }
                    _ => {
                        for _ in 0..1 + rng.below(5) {
                            text.push_str(debris[rng.below(debris.len())]);
                        }
                    }
                }
            }
            let whole = parse_pieces(format, None, &[&text]);
            let cuts = cuttings(&text);
            for pieces in cuts.iter().take(2).chain(cuts.iter().rev().take(6)) {
                assert_eq!(parse_pieces(format, None, pieces), whole, "{format:?} cut as {pieces:?}");
            }
            // Nothing is lost: content plus the calls' raw text covers the whole output.
            assert!(whole.content.len() <= text.len());
        }
    }
}
