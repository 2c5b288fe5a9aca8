//! Constrained decoding: a request's output made to match a JSON schema, any JSON object or a
//! Lark grammar, with `llguidance`. Each model compiles grammars against a token trie of its own
//! vocabulary (built on the first constrained request); each constrained sequence holds a
//! [`Guide`], which gives the set of tokens allowed next as a mask over the logits and follows
//! the tokens chosen. The mask is computed on the host while the batch is built, and masked rows
//! sample in the same step as free ones (see `sampling`).
//!
//! JSON is generated compactly (`", "` and `": "` separators, no free whitespace): a small model
//! given room for whitespace can spend its whole budget on it. A schema may say otherwise with
//! llguidance's own `x-guidance` key.

use std::sync::{Arc, OnceLock};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};

use crate::error::{EngineError, Result};
use crate::tokenizer::Tokenizer;

/// What a request's output must match.
#[derive(Clone, Debug, PartialEq)]
pub enum Constraint {
    /// Any JSON object.
    JsonObject,
    /// JSON valid against this schema.
    JsonSchema(Value),
    /// A grammar in llguidance's Lark dialect.
    Lark(String),
    /// A grammar the server built from the request's tools (a forced call, strict tools), with
    /// the parameter schema of each tool it holds (`tools[i]`'s), so an error names the tool at
    /// fault rather than a grammar the caller never wrote.
    Tools {
        /// The grammar, in the Lark dialect.
        lark: String,
        /// `tools[i]`'s parameter schema as the grammar holds it.
        schemas: Vec<Value>,
    },
}

impl Constraint {
    /// The request field errors name.
    pub fn field(&self) -> &'static str {
        match self {
            Constraint::JsonObject | Constraint::JsonSchema(_) => "constraint.json_schema",
            Constraint::Lark(_) => "constraint.grammar",
            Constraint::Tools { .. } => "tools",
        }
    }

    fn grammar(&self) -> Result<TopLevelGrammar> {
        let schema = match self {
            Constraint::JsonObject => json!({"type": "object"}),
            Constraint::JsonSchema(s) => s.clone(),
            Constraint::Lark(text) | Constraint::Tools { lark: text, .. } => {
                return Ok(TopLevelGrammar::from_lark(text.clone()));
            }
        };
        let schema = match schema {
            Value::Object(o) => o,
            Value::Bool(true) => Default::default(),
            other => {
                return Err(EngineError::invalid(
                    self.field(),
                    format!("a JSON schema is an object or true, got {other}"),
                ));
            }
        };
        Ok(TopLevelGrammar::from_json_schema(compact(schema)))
    }
}

/// A JSON schema with compact output asked of llguidance, unless it sets its own `x-guidance`.
pub(crate) fn compact(mut schema: serde_json::Map<String, Value>) -> Value {
    schema
        .entry("x-guidance")
        .or_insert_with(|| json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}));
    Value::Object(schema)
}

/// A tool's parameter schema, compact; a missing one is any object.
pub(crate) fn compact_parameters(schema: &Value) -> Value {
    match schema {
        Value::Object(o) => compact(o.clone()),
        _ => compact(serde_json::Map::from_iter([("type".to_string(), "object".into())])),
    }
}

/// The vocabulary as llguidance sees it: every token's bytes, in a trie.
struct Vocabulary {
    trie: TokTrie,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.greedy_tokenize(s)
    }

    fn tokenize_is_canonical(&self) -> bool {
        false
    }
}

/// GPT-2's byte-level alphabet: the character each byte is written as in a byte-level BPE
/// vocabulary, inverted.
fn byte_level_alphabet() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (b as char, b)
            } else {
                next += 1;
                (char::from_u32(next - 1).expect("below the surrogates"), b)
            }
        })
        .collect()
}

/// The bytes each token id stands for (`width` ids; ids without a token are empty and never
/// allowed). Special tokens carry llguidance's marker byte, so grammars never produce them as
/// text.
fn token_bytes(tok: &Tokenizer, width: usize) -> Vec<Vec<u8>> {
    let inner = tok.inner();
    let decoder = serde_json::to_string(&inner.get_decoder()).unwrap_or_default();
    let byte_level = decoder.contains("ByteLevel");
    let alphabet = byte_level_alphabet();
    let added = inner.get_added_tokens_decoder();
    (0..width as u32)
        .map(|id| {
            if let Some(a) = added.get(&id) {
                let mut b = a.content.clone().into_bytes();
                if a.special {
                    b.insert(0, TokTrie::SPECIAL_TOKEN_MARKER);
                }
                return b;
            }
            let Some(piece) = inner.id_to_token(id) else { return Vec::new() };
            if byte_level {
                piece.chars().map(|c| alphabet.get(&c).copied()).collect::<Option<Vec<u8>>>().unwrap_or_default()
            } else if let Some(hex) =
                piece.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')).filter(|h| h.len() == 2)
            {
                u8::from_str_radix(hex, 16).map(|b| vec![b]).unwrap_or_default()
            } else {
                piece.replace('\u{2581}', " ").into_bytes()
            }
        })
        .collect()
}

/// Where in `schema` the compiler's complaint `message` is about, as a JSON pointer (`#/properties/a`):
/// the first subschema, depth first, with a keyword the message quotes (`Unimplemented keys:
/// ["not"]`) or a string value it names (`Unknown format: uuid4`, `Invalid type: strange`,
/// `Pointer '/$defs/x' does not exist`). llguidance's messages do not say where.
fn locate(schema: &Value, message: &str) -> Option<String> {
    fn walk(v: &Value, path: &mut Vec<String>, message: &str) -> Option<String> {
        let here = |path: &[String]| {
            let escaped: Vec<String> = path.iter().map(|p| p.replace('~', "~0").replace('/', "~1")).collect();
            format!("#/{}", escaped.join("/"))
        };
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    let named = |s: &str| {
                        message.contains(&format!("\"{s}\""))
                            || message.ends_with(&format!(": {s}"))
                            || message.contains(&format!("'{}'", s.trim_start_matches('#')))
                    };
                    let hit = named(k) || x.as_str().is_some_and(|s| s.len() > 1 && named(s));
                    if hit && k != "properties" && k != "$defs" && k != "definitions" {
                        return Some(here(path));
                    }
                }
                for (k, x) in o {
                    path.push(k.clone());
                    if let Some(p) = walk(x, path, message) {
                        return Some(p);
                    }
                    path.pop();
                }
                None
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    path.push(i.to_string());
                    if let Some(p) = walk(x, path, message) {
                        return Some(p);
                    }
                    path.pop();
                }
                None
            }
            _ => None,
        }
    }
    walk(schema, &mut Vec::new(), message)
}

/// Compiles a constraint against a vocabulary of single bytes (and an end token), as no model
/// has it: a schema or grammar that is malformed or unsupported fails here as it would for any
/// model, so a caller that picks the model by name refuses it before loading anything. What
/// depends on the vocabulary (a grammar no token sequence can start) is found at admission.
pub fn precheck(c: &Constraint) -> Result<()> {
    // A Lark grammar may name the model's special tokens (`<|eot_id|>`, `<[128009]>`), which
    // only its own vocabulary has: such a grammar is judged at admission alone.
    if let Constraint::Lark(text) | Constraint::Tools { lark: text, .. } = c
        && text.contains('<')
    {
        return Ok(());
    }
    let factory = byte_factory()?;
    factory.create_parser(c.grammar()?).map(drop).map_err(|e| compile_error(factory, c, e.to_string()))
}

/// [`precheck`] for the parameter schemas of the tools a request holds calls to (`None`: a tool
/// whose calls are free): errors name `tools[i].function.parameters`.
pub fn precheck_tools(schemas: &[Option<Value>]) -> Result<()> {
    let factory = byte_factory()?;
    let held: Vec<Value> =
        schemas.iter().map(|s| s.as_ref().map_or_else(|| json!({"type": "object"}), compact_parameters)).collect();
    tool_at_fault(factory, &held).map_or(Ok(()), Err)
}

/// The compiler over a vocabulary of single bytes and an end token, built once.
fn byte_factory() -> Result<&'static ParserFactory> {
    static BYTES: OnceLock<std::result::Result<ParserFactory, String>> = OnceLock::new();
    let factory = BYTES.get_or_init(|| {
        let mut words: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        words.push(vec![TokTrie::SPECIAL_TOKEN_MARKER, b'e', b'o', b's']);
        let info = TokRxInfo::new(words.len() as u32, 256);
        let env: TokEnv = Arc::new(Vocabulary { trie: TokTrie::from(&info, &words) });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(factory)
    });
    factory.as_ref().map_err(|e| EngineError::Constraint(format!("grammar check unavailable: {e}")))
}

/// A compile error named as the request names what failed: the tool whose schema it is, or the
/// constraint's field with the place in the schema.
fn compile_error(factory: &ParserFactory, c: &Constraint, message: String) -> EngineError {
    if let Constraint::Tools { schemas, .. } = c {
        return tool_at_fault(factory, schemas).unwrap_or_else(|| EngineError::invalid(c.field(), message));
    }
    let at = match c {
        Constraint::JsonSchema(s) => locate(s, &message).map(|p| format!("at {p}: ")),
        _ => None,
    };
    EngineError::invalid(c.field(), format!("{}{message}", at.unwrap_or_default()))
}

/// One model's grammar compiler, built on first use.
pub(crate) struct Grammars {
    factory: OnceLock<std::result::Result<Arc<ParserFactory>, String>>,
}

impl Grammars {
    /// A compiler not built yet.
    pub fn new() -> Grammars {
        Grammars { factory: OnceLock::new() }
    }

    fn factory(&self, tok: &Tokenizer, eos: &[u32], width: usize) -> Result<&Arc<ParserFactory>> {
        let built = self.factory.get_or_init(|| {
            let started = std::time::Instant::now();
            let mut info = TokRxInfo::new(width as u32, eos.first().copied().unwrap_or(0));
            info.tok_end_of_turn = eos.get(1).copied();
            let trie = TokTrie::from(&info, &token_bytes(tok, width));
            let env: TokEnv = Arc::new(Vocabulary { trie });
            let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
            factory.quiet();
            tracing::debug!(tokens = width, ms = started.elapsed().as_secs_f64() * 1e3, "grammar compiler built");
            Ok(Arc::new(factory))
        });
        built.as_ref().map_err(|e| EngineError::Tokenizer(format!("constrained decoding is unavailable: {e}")))
    }

    /// Compiles a constraint into a guide for one sequence. An unsupported or malformed schema
    /// or grammar is an invalid argument naming the constraint's field.
    pub fn compile(&self, c: &Constraint, tok: &Tokenizer, eos: &[u32], width: usize) -> Result<Guide> {
        let factory = self.factory(tok, eos, width)?;
        let parser = factory.create_parser(c.grammar()?).map_err(|e| compile_error(factory, c, e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(EngineError::invalid(c.field(), e));
        }
        let mut guide = Guide { matcher, eos: eos.to_vec(), width, field: c.field(), first: None };
        // The first mask, made now (and kept for the first step): a grammar that cannot start (a
        // schema whose `$ref` leads only back to itself) is this request's bad argument, found
        // before it joins a batch.
        let first =
            guide.compute().map_err(|why| EngineError::invalid(c.field(), format!("admits no output: {why}")))?;
        guide.first = Some(first);
        Ok(guide)
    }
}

/// The error of the first tool whose parameter schema does not compile alone, named as the
/// request's `tools[i].function.parameters`.
fn tool_at_fault(factory: &ParserFactory, schemas: &[Value]) -> Option<EngineError> {
    schemas.iter().enumerate().find_map(|(i, s)| {
        let alone = Constraint::JsonSchema(s.clone()).grammar().ok()?;
        let message = factory.create_parser(alone).err()?.to_string();
        let at = locate(s, &message).map(|p| format!("at {p}: ")).unwrap_or_default();
        Some(EngineError::invalid(format!("tools[{i}].function.parameters"), format!("{at}{message}")))
    })
}

/// The constraint of one running sequence: which tokens may come next.
pub struct Guide {
    matcher: Matcher,
    eos: Vec<u32>,
    width: usize,
    /// The request field the constraint came from, for errors.
    field: &'static str,
    /// The mask computed when the guide was made, for the first step.
    first: Option<SimpleVob>,
}

impl Guide {
    /// Writes the next token's mask into `row` (`width` logits' worth): 0 where allowed,
    /// negative infinity elsewhere. Where the grammar may end, every end-of-sequence token is
    /// allowed.
    /// A grammar that can go no further (one that recurses without end past some point) is the
    /// request's bad argument: its sequence ends with it, naming the constraint.
    pub fn fill(&mut self, row: &mut [f32]) -> Result<()> {
        self.mask(row)
            .map_err(|why| EngineError::invalid(self.field, format!("the output so far cannot be continued: {why}")))
    }

    /// [`Guide::fill`], failing with the grammar engine's reason (its first line: the rest is
    /// its statistics).
    fn mask(&mut self, row: &mut [f32]) -> std::result::Result<(), String> {
        let mask = self.compute()?;
        let n = self.width.min(row.len());
        let row = &mut row[..n];
        row.fill(f32::NEG_INFINITY);
        let mut any = false;
        mask.iter_set_entries(|i| {
            if let Some(x) = row.get_mut(i) {
                *x = 0.0;
                any = true;
            }
        });
        if self.eos.iter().any(|&t| mask.is_allowed(t)) {
            for &t in &self.eos {
                if let Some(x) = row.get_mut(t as usize) {
                    *x = 0.0;
                }
            }
        }
        if !any {
            return Err("no token of the vocabulary can come next".into());
        }
        Ok(())
    }

    /// The allowed tokens now: the one made with the guide, else the matcher's.
    fn compute(&mut self) -> std::result::Result<SimpleVob, String> {
        if let Some(m) = self.first.take() {
            return Ok(m);
        }
        self.matcher.compute_mask_or_eos().map_err(|e| match e.to_string().lines().next().unwrap_or_default() {
            "NoExtensionBias" => {
                "no text can extend it (a rule or `$ref` that only leads back to itself never ends)".into()
            }
            line => line.to_string(),
        })
    }

    /// Follows a chosen token (end-of-sequence tokens end the sequence and are not fed).
    pub fn consume(&mut self, token: u32) -> Result<()> {
        // A token moves the grammar on: the kept first mask no longer applies.
        self.first = None;
        if self.eos.contains(&token) {
            return Ok(());
        }
        self.matcher.consume_token(token).map_err(|e| EngineError::Constraint(e.to_string()))
    }

    /// Whether the grammar is complete and admits nothing more: the sequence is finished.
    pub fn finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}

impl std::fmt::Debug for Guide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guide").field("width", &self.width).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(id: u32, content: &str) -> Value {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": true})
    }

    fn tokenizer(
        decoder: Value,
        vocab: Value,
        specials: &[(u32, &str)],
        byte_fallback: bool,
    ) -> (Tokenizer, tempfile::TempDir) {
        let doc = json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": specials.iter().map(|(i, c)| added(*i, c)).collect::<Vec<_>>(),
            "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": decoder,
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": byte_fallback,
                "vocab": vocab, "merges": []},
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        (Tokenizer::from_file(&path, None, None).unwrap(), dir)
    }

    fn byte_level() -> (Tokenizer, tempfile::TempDir) {
        let vocab = json!({"a": 0, "b": 1, "ab": 2, "\u{120}": 3, "\u{10A}": 4, "\u{120}a": 5, "<|end|>": 6});
        tokenizer(
            json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
            vocab,
            &[(6, "<|end|>")],
            false,
        )
    }

    #[test]
    fn byte_level_pieces_are_their_bytes_and_specials_are_marked() {
        let (tok, _dir) = byte_level();
        let b = token_bytes(&tok, 8);
        assert_eq!(
            &b[..6],
            &[b"a".to_vec(), b"b".to_vec(), b"ab".to_vec(), b" ".to_vec(), b"\n".to_vec(), b" a".to_vec()]
        );
        assert_eq!(b[6], [&[TokTrie::SPECIAL_TOKEN_MARKER][..], b"<|end|>"].concat());
        assert!(b[7].is_empty(), "an id past the vocabulary is no token");
    }

    #[test]
    fn sentencepiece_pieces_are_their_bytes() {
        let decoder = json!({"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]});
        let vocab = json!({"<s>": 0, "<0x0A>": 1, "\u{2581}": 2, "a": 3, "\u{2581}a": 4});
        let (tok, _dir) = tokenizer(decoder, vocab, &[(0, "<s>")], true);
        let b = token_bytes(&tok, 5);
        assert_eq!(&b[1..], &[b"\n".to_vec(), b" ".to_vec(), b"a".to_vec(), b" a".to_vec()]);
        assert_eq!(b[0][0], TokTrie::SPECIAL_TOKEN_MARKER);
    }

    #[test]
    fn a_guide_allows_exactly_what_the_grammar_can_continue_with() {
        let (tok, _dir) = byte_level();
        let grammars = Grammars::new();
        let mut g = grammars.compile(&Constraint::Lark(r#"start: "ab" " a""#.into()), &tok, &[6], 8).unwrap();
        let allowed = |g: &mut Guide| {
            let mut row = vec![1.0; 8];
            g.fill(&mut row).unwrap();
            row.iter().enumerate().filter(|(_, x)| **x == 0.0).map(|(i, _)| i).collect::<Vec<_>>()
        };
        assert_eq!(allowed(&mut g), [0, 2], "'a' or 'ab'");
        g.consume(0).unwrap();
        assert_eq!(allowed(&mut g), [1]);
        g.consume(1).unwrap();
        assert_eq!(allowed(&mut g), [3, 5], "' ' or ' a'");
        assert!(g.consume(1).is_err(), "a token the grammar cannot take is refused");
        let mut g = grammars.compile(&Constraint::Lark(r#"start: "ab" " a""#.into()), &tok, &[6], 8).unwrap();
        for t in [2, 5] {
            g.consume(t).unwrap();
        }
        assert!(g.finished() || allowed(&mut g) == [6], "complete: only the end is left");
        let e = grammars.compile(&Constraint::JsonSchema(json!({"type": "strange"})), &tok, &[6], 8).unwrap_err();
        assert!(
            matches!(e, EngineError::InvalidArgument { ref field, .. } if field == "constraint.json_schema"),
            "{e}"
        );
    }

    /// A byte-level vocabulary where token `b` is byte `b`, plus special tokens 256
    /// `<|end|>`, 257 `[TOOL_CALLS]`, 258 `<|python_tag|>`.
    fn bytes_vocab() -> (Tokenizer, tempfile::TempDir) {
        let alphabet = byte_level_alphabet();
        let mut vocab = serde_json::Map::new();
        for (c, b) in &alphabet {
            vocab.insert(c.to_string(), json!(*b as u32));
        }
        let specials = [(256, "<|end|>"), (257, "[TOOL_CALLS]"), (258, "<|python_tag|>")];
        for (id, t) in specials {
            vocab.insert(t.to_string(), json!(id));
        }
        let decoder = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
        tokenizer(decoder, Value::Object(vocab), &specials, false)
    }

    /// Whether `guide` takes `tokens` and may then end.
    fn takes(mut guide: Guide, tokens: &[u32]) -> bool {
        let mut row = vec![0.0; 259];
        for &t in tokens {
            if guide.fill(&mut row).is_err() || row[t as usize] != 0.0 || guide.consume(t).is_err() {
                return false;
            }
        }
        guide.finished() || (guide.fill(&mut row).is_ok() && row[256] == 0.0)
    }

    #[test]
    fn tool_call_grammars_take_valid_calls_and_text_and_refuse_invalid_calls() {
        use crate::tools::{ForcedChoice, ToolFormat};
        let (tok, _dir) = bytes_vocab();
        let grammars = Grammars::new();
        let tools = vec![
            (
                "get_time".to_string(),
                json!({"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"]}),
            ),
            ("ping".to_string(), Value::Null),
        ];
        let special = |t: &str| tok.special_token_id(t);
        let text = |s: &str| s.bytes().map(u32::from).collect::<Vec<u32>>();
        let with = |marker: u32, s: &str| [vec![marker], text(s)].concat();
        let check = |grammar: String, cases: Vec<(Vec<u32>, bool)>| {
            for (tokens, ok) in cases {
                let guide = grammars.compile(&Constraint::Lark(grammar.clone()), &tok, &[256], 259).unwrap();
                let shown =
                    String::from_utf8_lossy(&tokens.iter().map(|&t| t.min(255) as u8).collect::<Vec<_>>()).into_owned();
                assert_eq!(takes(guide, &tokens), ok, "{shown:?} under\n{grammar}");
            }
        };
        check(
            ToolFormat::Hermes.auto_grammar(&tools, &special).unwrap(),
            vec![
                (text("Hello there"), true),
                (
                    text(
                        "Sure. <tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\"}}\n</tool_call>",
                    ),
                    true,
                ),
                (text("<tool_call>{\"name\": \"ping\", \"arguments\": {}}</tool_call>"), true),
                (text("<tool_call>{\"name\": \"get_time\", \"arguments\": {\"zone\": \"PST\"}}</tool_call>"), false),
                (text("<tool_call>{\"name\": \"nope\", \"arguments\": {}}</tool_call>"), false),
            ],
        );
        check(
            ToolFormat::Llama3.auto_grammar(&tools, &special).unwrap(),
            vec![
                (text("The time is noon."), true),
                (text("{\"name\": \"get_time\", \"parameters\": {\"zone\": \"CET\"}}"), true),
                (with(258, "{\"name\": \"ping\", \"parameters\": {}}; {\"name\": \"ping\", \"parameters\": {}}"), true),
                (text("{\"name\": \"get_time\", \"parameters\": {}}"), false),
                (text("{\"oops\": 1}"), false),
            ],
        );
        check(
            ToolFormat::Mistral.auto_grammar(&tools, &special).unwrap(),
            vec![
                (text("Plain [text]."), true),
                (
                    with(
                        257,
                        "[{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\"}}, {\"name\": \"ping\", \"arguments\": {}}]",
                    ),
                    true,
                ),
                (with(257, "[{\"name\": \"get_time\", \"arguments\": {\"zone\": 5}}]"), false),
            ],
        );
        // Phi-4-mini's markers as plain text (this vocabulary has no token for them).
        check(
            ToolFormat::Phi4Mini.auto_grammar(&tools, &special).unwrap(),
            vec![
                (text("Plain [text] with <|tool| in it."), true),
                (text("<|tool_call|>[{\"name\": \"ping\", \"arguments\": {}}]<|/tool_call|>"), true),
                (text("<|tool_call|>[{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}]"), true),
                (text("<|tool_call|>[{\"name\": \"get_time\", \"arguments\": {\"zone\": 5}}]"), false),
                (text("Sure: <|tool_call|>[]"), false),
            ],
        );
        // What follows a forced opening: the arguments and the format's closing.
        let named = ForcedChoice::Function("get_time".into());
        check(
            ToolFormat::Hermes.forced_grammar(&named, &tools).unwrap(),
            vec![
                (text(" {\"zone\": \"CET\"}}\n</tool_call>"), true),
                (text("{\"zone\": \"CET\"}}\n</tool_call>"), true),
                (text(" {\"zone\": \"XYZ\"}}\n</tool_call>"), false),
            ],
        );
        check(
            ToolFormat::Mistral.forced_grammar(&ForcedChoice::Required, &tools).unwrap(),
            vec![(text("[{\"name\": \"ping\", \"arguments\": {}}]"), true), (text("[{\"name\": \"ping\"}]"), false)],
        );
        check(
            ToolFormat::Llama3.forced_grammar(&ForcedChoice::Required, &tools).unwrap(),
            vec![(text(" \"ping\", \"parameters\": {}}"), true)],
        );
        assert!(ToolFormat::Hermes.forced_grammar(&ForcedChoice::Function("nope".into()), &tools).is_none());
        assert!(ToolFormat::Mistral.auto_grammar(&[], &special).is_none());
    }

    #[test]
    fn schema_errors_name_the_subschema_at_fault() {
        let (tok, _dir) = byte_level();
        let grammars = Grammars::new();
        let nested = |inner: Value| json!({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": inner}}, "c": {"type": "string"}}});
        for (inner, want) in [
            (json!({"not": {"type": "string"}}), "at #/properties/a/properties/b: "),
            (json!({"type": "string", "format": "weird"}), "at #/properties/a/properties/b: "),
            (json!({"type": "strange"}), "at #/properties/a/properties/b: "),
            (json!({"$ref": "#/$defs/gone"}), "at #/properties/a/properties/b: "),
            (json!({"type": "array", "items": {"if": {}, "then": {}}}), "at #/properties/a/properties/b/items: "),
        ] {
            let e = grammars.compile(&Constraint::JsonSchema(nested(inner.clone())), &tok, &[6], 8).unwrap_err();
            let EngineError::InvalidArgument { message, .. } = &e else { panic!("{e}") };
            assert!(message.starts_with(want), "{inner}: {message}");
        }
    }

    #[test]
    fn a_grammar_that_cannot_go_on_is_the_requests_bad_argument() {
        let (tok, _dir) = bytes_vocab();
        let grammars = Grammars::new();
        // Cannot start: refused when compiled, before the request joins a batch.
        let e = grammars.compile(&Constraint::JsonSchema(json!({"$ref": "#"})), &tok, &[256], 259).unwrap_err();
        assert!(
            matches!(&e, EngineError::InvalidArgument { field, message }
                if field == "constraint.json_schema" && message.contains("admits no output") && !message.contains('\n')),
            "{e}"
        );
        // Starts, then can go no further: the mask fails with the request's own error.
        let mut g =
            grammars.compile(&Constraint::Lark("start: \"a\" x\nx: x \"b\"".into()), &tok, &[256], 259).unwrap();
        let mut row = vec![0.0; 259];
        g.fill(&mut row).unwrap();
        g.consume(u32::from(b'a')).unwrap();
        let e = g.fill(&mut row).unwrap_err();
        assert!(
            matches!(&e, EngineError::InvalidArgument { field, message }
                if field == "constraint.grammar" && message.contains("itself")),
            "{e}"
        );
    }
}
