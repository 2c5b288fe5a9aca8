//! The JSON object of one tool call, `{"name": "...", "arguments": {...}}`, parsed as it streams:
//! it reports the name once its string closes and passes the arguments value through as raw text
//! fragments, so the caller can forward them before the call is finished. Shared by every
//! format; the format-specific framing around it lives in `parser.rs`.

use super::json::{Step, ValueScanner};

/// What a call object yielded while being fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// The function name, decoded.
    Name(String),
    /// Raw text of the arguments JSON value (a fragment; all fragments concatenate to it).
    Args(String),
}

/// How far a call object got with the text it was fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// All the text belongs to the call, which isn't finished.
    More,
    /// The name just completed with byte `used`; the caller decides whether to go on (feeding
    /// the rest) before any text after the name is taken.
    Named { used: usize },
    /// The call is finished; the first `used` bytes belonged to it.
    Done { used: usize },
    /// The character at byte `at` can't continue a call; the bytes before it were consumed.
    Failed { at: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Name,
    Args,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the opening brace.
    Open,
    /// Expecting a key (`first`: the object may still be empty; the strict check applies).
    Key {
        first: bool,
    },
    /// Inside a key string.
    KeyStr {
        first: bool,
    },
    /// Between a key and its value.
    Colon,
    /// Before the value of the last key.
    Value,
    /// Inside that value.
    InValue,
    /// After a value: `,` or `}`.
    After,
    Done,
}

/// Keys that say an object is a tool call (Llama 3.1 sometimes leads with `"type": "function"`).
const CALL_KEYS: [&str; 4] = ["name", "arguments", "parameters", "type"];

/// Parser of one call object, or, for Mistral's `name[ARGS]{...}` form, of a bare arguments value.
#[derive(Debug)]
pub(crate) struct CallObject {
    at: At,
    role: Role,
    /// Syntax of the key or value being read.
    scan: ValueScanner,
    /// Raw text of the key, the name, or string-encoded arguments being read.
    raw: String,
    /// The arguments are a JSON string holding the object (some fine-tunes write them so).
    args_in_string: bool,
    name_seen: bool,
    args_seen: bool,
    /// Only the arguments value, no enclosing object.
    bare: bool,
    /// The first key must be a call key, else the text is `not_a_call`.
    strict: bool,
}

impl CallObject {
    /// Expects `{` (after whitespace). `strict`: the object might be ordinary JSON content, so
    /// give up at once unless its first key is one a call starts with.
    pub(crate) fn new(strict: bool) -> CallObject {
        CallObject {
            at: At::Open,
            role: Role::Other,
            scan: ValueScanner::new(),
            raw: String::new(),
            args_in_string: false,
            name_seen: false,
            args_seen: false,
            bare: false,
            strict,
        }
    }

    /// Expects just the arguments value (Mistral v11: the name came before `[ARGS]`).
    pub(crate) fn bare_args() -> CallObject {
        CallObject { at: At::Value, role: Role::Args, bare: true, name_seen: true, ..CallObject::new(false) }
    }

    /// Feeds text; pieces go to `out`.
    pub(crate) fn feed(&mut self, text: &str, out: &mut Vec<Piece>) -> Outcome {
        let mut frag = String::new();
        let mut outcome = Outcome::More;
        for (i, c) in text.char_indices() {
            let named = self.name_seen;
            match self.char(c, &mut frag, out) {
                Ok(false) if !named && self.name_seen => {
                    outcome = Outcome::Named { used: i + c.len_utf8() };
                    break;
                }
                Ok(false) => {}
                Ok(true) => {
                    outcome = Outcome::Done { used: i + c.len_utf8() };
                    break;
                }
                Err(()) => {
                    outcome = Outcome::Failed { at: i };
                    break;
                }
            }
        }
        if !frag.is_empty() {
            out.push(Piece::Args(frag));
        }
        outcome
    }

    /// Consumes one character: Ok(true) when the call is finished, Err on failure.
    fn char(&mut self, c: char, frag: &mut String, out: &mut Vec<Piece>) -> Result<bool, ()> {
        let ws = matches!(c, ' ' | '\t' | '\n' | '\r');
        match self.at {
            At::Done => Err(()),
            At::Open if ws => Ok(false),
            At::Open if c == '{' => {
                self.at = At::Key { first: true };
                Ok(false)
            }
            At::Open => Err(()),
            At::Key { .. } if ws => Ok(false),
            At::Key { first: true } if c == '}' => Err(()),
            At::Key { first } if c == '"' => {
                self.at = At::KeyStr { first };
                self.scan = ValueScanner::new();
                self.raw.clear();
                self.raw.push(c);
                self.scan.push(c);
                Ok(false)
            }
            At::Key { .. } => Err(()),
            At::KeyStr { first } => {
                self.raw.push(c);
                match self.scan.push(c) {
                    Step::More => Ok(false),
                    Step::Done => {
                        let key: String = serde_json::from_str(&self.raw).map_err(|_| ())?;
                        if self.strict && first && !CALL_KEYS.contains(&key.as_str()) {
                            return Err(());
                        }
                        self.role = match key.as_str() {
                            "name" if !self.name_seen => Role::Name,
                            "arguments" | "parameters" if !self.args_seen => Role::Args,
                            // A second name or arguments would make the call ambiguous.
                            "name" | "arguments" | "parameters" => return Err(()),
                            _ => Role::Other,
                        };
                        self.at = At::Colon;
                        Ok(false)
                    }
                    _ => Err(()),
                }
            }
            At::Colon if ws => Ok(false),
            At::Colon if c == ':' => {
                self.at = At::Value;
                Ok(false)
            }
            At::Colon => Err(()),
            At::Value if ws => Ok(false),
            At::Value => self.value_start(c, frag),
            At::InValue => self.in_value(c, frag, out),
            At::After if ws => Ok(false),
            At::After if c == ',' => {
                self.at = At::Key { first: false };
                Ok(false)
            }
            At::After if c == '}' => {
                if !self.name_seen {
                    return Err(());
                }
                if !self.args_seen {
                    frag.push_str("{}");
                    self.args_seen = true;
                }
                self.at = At::Done;
                Ok(true)
            }
            At::After => Err(()),
        }
    }

    fn value_start(&mut self, c: char, frag: &mut String) -> Result<bool, ()> {
        self.scan = ValueScanner::new();
        self.raw.clear();
        self.at = At::InValue;
        match self.role {
            Role::Name if c != '"' => return Err(()),
            Role::Args => match c {
                '{' => frag.push(c),
                '"' => {
                    self.args_in_string = true;
                    self.raw.push(c);
                }
                // `null` arguments mean none.
                'n' => self.raw.push(c),
                _ => return Err(()),
            },
            _ => self.raw.push(c),
        }
        match self.scan.push(c) {
            Step::More => Ok(false),
            _ => Err(()),
        }
    }

    fn in_value(&mut self, c: char, frag: &mut String, out: &mut Vec<Piece>) -> Result<bool, ()> {
        let step = self.scan.push(c);
        match step {
            Step::Error => return Err(()),
            Step::More | Step::Done => {
                if self.role == Role::Args && !self.args_in_string && !self.raw.starts_with('n') {
                    frag.push(c);
                } else {
                    self.raw.push(c);
                }
            }
            Step::DoneBefore => {}
        }
        if step == Step::More {
            return Ok(false);
        }
        match self.role {
            Role::Name => {
                let name: String = serde_json::from_str(&self.raw).map_err(|_| ())?;
                if name.trim().is_empty() {
                    return Err(());
                }
                self.name_seen = true;
                // Arguments written before the name go out first, keeping the text's order.
                if !frag.is_empty() {
                    out.push(Piece::Args(std::mem::take(frag)));
                }
                out.push(Piece::Name(name));
            }
            Role::Args => {
                self.args_seen = true;
                if self.args_in_string {
                    let inner: String = serde_json::from_str(&self.raw).map_err(|_| ())?;
                    match serde_json::from_str::<serde_json::Value>(&inner) {
                        Ok(v) if v.is_object() => frag.push_str(inner.trim()),
                        _ => return Err(()),
                    }
                } else if self.raw == "null" {
                    frag.push_str("{}");
                }
            }
            Role::Other => {}
        }
        self.role = Role::Other;
        self.raw.clear();
        if self.bare {
            self.at = At::Done;
            return Ok(true);
        }
        self.at = At::After;
        if step == Step::DoneBefore {
            // A bare number ended at this character, which belongs to the object.
            return self.char(c, frag, out);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(obj: &mut CallObject, text: &str) -> (Outcome, Option<String>, String) {
        let mut out = Vec::new();
        let mut o = obj.feed(text, &mut out);
        let mut base = 0;
        while let Outcome::Named { used } = o {
            base += used;
            o = match obj.feed(&text[base..], &mut out) {
                Outcome::Done { used } => Outcome::Done { used: base + used },
                Outcome::Failed { at } => Outcome::Failed { at: base + at },
                other => other,
            };
        }
        let mut name = None;
        let mut args = String::new();
        for p in out {
            match p {
                Piece::Name(n) => name = Some(n),
                Piece::Args(a) => args.push_str(&a),
            }
        }
        (o, name, args)
    }

    #[test]
    fn parses_a_call_and_reports_where_it_ends() {
        let t = r#" {"name": "get_weather", "arguments": {"city": "Pa}ris", "n": [1, {"x": null}]}}
</tool_call>"#;
        let (o, name, args) = run(&mut CallObject::new(false), t);
        assert_eq!(o, Outcome::Done { used: t.find('\n').unwrap() });
        assert_eq!(name.as_deref(), Some("get_weather"));
        assert_eq!(args, r#"{"city": "Pa}ris", "n": [1, {"x": null}]}"#);
    }

    #[test]
    fn accepts_llama_shapes_and_missing_or_string_arguments() {
        let (o, name, args) =
            run(&mut CallObject::new(true), r#"{"type": "function", "parameters": {"a": 1}, "name": "f", "x": 2}"#);
        assert!(matches!(o, Outcome::Done { .. }));
        assert_eq!((name.as_deref(), args.as_str()), (Some("f"), r#"{"a": 1}"#));
        let (_, _, args) = run(&mut CallObject::new(false), r#"{"name": "f"}"#);
        assert_eq!(args, "{}");
        let (_, _, args) = run(&mut CallObject::new(false), r#"{"name": "f", "arguments": "{\"q\": \"x\"}"}"#);
        assert_eq!(args, r#"{"q": "x"}"#);
        let (_, _, args) = run(&mut CallObject::new(false), r#"{"name": "f", "arguments": null}"#);
        assert_eq!(args, "{}");
        let (o, _, args) = run(&mut CallObject::bare_args(), r#" {"a": [1]}[TOOL_CALLS]"#);
        assert_eq!((o, args.as_str()), (Outcome::Done { used: 11 }, r#"{"a": [1]}"#));
    }

    #[test]
    fn strict_mode_tells_plain_json_from_broken_calls() {
        let (o, ..) = run(&mut CallObject::new(true), r#"{"answer": 42}"#);
        assert_eq!(o, Outcome::Failed { at: 8 });
        let (o, ..) = run(&mut CallObject::new(true), "Hello");
        assert_eq!(o, Outcome::Failed { at: 0 });
        let (o, ..) = run(&mut CallObject::new(false), r#"{"answer": 42}"#);
        assert_eq!(o, Outcome::Failed { at: 13 });
        let (o, ..) = run(&mut CallObject::new(false), r#"{"name": "f", "arguments": {"a": tru"#);
        assert_eq!(o, Outcome::More);
        let (o, ..) = run(&mut CallObject::new(false), r#"{"name": "f", "arguments": [1]}"#);
        assert_eq!(o, Outcome::Failed { at: 27 });
        let (o, ..) = run(&mut CallObject::new(false), r#"{"name": "f", "arguments": {"a": 1}, "name": "g"}"#);
        assert!(matches!(o, Outcome::Failed { .. }));
    }

    #[test]
    fn numbers_end_at_the_delimiter() {
        let (o, name, _) = run(&mut CallObject::new(false), r#"{"id": 12, "name": "f", "n": 3}"#);
        assert_eq!((o, name.as_deref()), (Outcome::Done { used: 31 }, Some("f")));
    }
}
