//! An incremental JSON syntax checker: fed one character at a time, it says when a single JSON
//! value is complete or can no longer be valid. Tool-call parsers use it to stream argument text
//! as the model writes it while still knowing where the value ends (nesting, strings, escapes)
//! and refusing text that could never be JSON, without waiting for the whole call.

/// What one character did to the value being scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The value is not complete yet; the character belongs to it.
    More,
    /// The character completed the value and belongs to it.
    Done,
    /// The value was already complete (a bare number) and this character is not part of it.
    DoneBefore,
    /// The character can't continue any valid JSON value.
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

/// Where in a number the scanner is; the grammar is RFC 8259's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Point,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    fn can_end(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a value; `close` allows `]` (an array that may still be empty).
    Value {
        close: bool,
    },
    /// Expecting an object key; `close` allows `}` (an object that may still be empty).
    Key {
        close: bool,
    },
    Colon,
    /// Inside a string; `esc` is 0, 1 right after a backslash, or 2..=5 while reading the four
    /// hex digits of `\u` (remaining + 1).
    Str {
        key: bool,
        esc: u8,
    },
    Lit {
        word: &'static str,
        pos: usize,
    },
    Num(Num),
    /// After a value inside a container: `,` or the closing bracket.
    After,
    Done,
    Failed,
}

/// Checks the syntax of one JSON value as it streams in (leading whitespace is allowed).
#[derive(Debug, Clone)]
pub(crate) struct ValueScanner {
    stack: Vec<Container>,
    state: State,
}

impl Default for ValueScanner {
    fn default() -> Self {
        ValueScanner::new()
    }
}

impl ValueScanner {
    /// A scanner expecting the start of a value.
    pub(crate) fn new() -> ValueScanner {
        ValueScanner { stack: Vec::new(), state: State::Value { close: false } }
    }

    /// Feeds one character.
    pub(crate) fn push(&mut self, c: char) -> Step {
        let step = self.step(c);
        if step == Step::Error {
            self.state = State::Failed;
        }
        step
    }

    fn value_done(&mut self) -> Step {
        if self.stack.is_empty() {
            self.state = State::Done;
            Step::Done
        } else {
            self.state = State::After;
            Step::More
        }
    }

    fn step(&mut self, c: char) -> Step {
        match self.state {
            State::Done => Step::DoneBefore,
            State::Failed => Step::Error,
            State::Value { close } => match c {
                ' ' | '\t' | '\n' | '\r' => Step::More,
                ']' if close => self.close(Container::Array),
                '{' => {
                    self.stack.push(Container::Object);
                    self.state = State::Key { close: true };
                    Step::More
                }
                '[' => {
                    self.stack.push(Container::Array);
                    self.state = State::Value { close: true };
                    Step::More
                }
                '"' => {
                    self.state = State::Str { key: false, esc: 0 };
                    Step::More
                }
                't' => self.literal("true"),
                'f' => self.literal("false"),
                'n' => self.literal("null"),
                '-' => self.number(Num::Minus),
                '0' => self.number(Num::Zero),
                '1'..='9' => self.number(Num::Int),
                _ => Step::Error,
            },
            State::Key { close } => match c {
                ' ' | '\t' | '\n' | '\r' => Step::More,
                '}' if close => self.close(Container::Object),
                '"' => {
                    self.state = State::Str { key: true, esc: 0 };
                    Step::More
                }
                _ => Step::Error,
            },
            State::Colon => match c {
                ' ' | '\t' | '\n' | '\r' => Step::More,
                ':' => {
                    self.state = State::Value { close: false };
                    Step::More
                }
                _ => Step::Error,
            },
            State::Str { key, esc } => self.string(c, key, esc),
            State::Lit { word, pos } => {
                if word[pos..].starts_with(c) {
                    if pos + 1 == word.len() {
                        self.value_done()
                    } else {
                        self.state = State::Lit { word, pos: pos + 1 };
                        Step::More
                    }
                } else {
                    Step::Error
                }
            }
            State::Num(n) => self.in_number(c, n),
            State::After => match c {
                ' ' | '\t' | '\n' | '\r' => Step::More,
                ',' => {
                    self.state = match self.stack.last() {
                        Some(Container::Object) => State::Key { close: false },
                        _ => State::Value { close: false },
                    };
                    Step::More
                }
                '}' => self.close(Container::Object),
                ']' => self.close(Container::Array),
                _ => Step::Error,
            },
        }
    }

    fn close(&mut self, which: Container) -> Step {
        if self.stack.pop() == Some(which) { self.value_done() } else { Step::Error }
    }

    fn literal(&mut self, word: &'static str) -> Step {
        self.state = State::Lit { word, pos: 1 };
        Step::More
    }

    fn number(&mut self, n: Num) -> Step {
        self.state = State::Num(n);
        Step::More
    }

    fn string(&mut self, c: char, key: bool, esc: u8) -> Step {
        match esc {
            0 => match c {
                '"' if key => {
                    self.state = State::Colon;
                    Step::More
                }
                '"' => self.value_done(),
                '\\' => {
                    self.state = State::Str { key, esc: 1 };
                    Step::More
                }
                // JSON forbids raw control characters inside strings; serde_json would too.
                '\u{0}'..='\u{1f}' => Step::Error,
                _ => Step::More,
            },
            1 => match c {
                '"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't' => {
                    self.state = State::Str { key, esc: 0 };
                    Step::More
                }
                'u' => {
                    self.state = State::Str { key, esc: 5 };
                    Step::More
                }
                _ => Step::Error,
            },
            _ if c.is_ascii_hexdigit() => {
                self.state = State::Str { key, esc: if esc == 2 { 0 } else { esc - 1 } };
                Step::More
            }
            _ => Step::Error,
        }
    }

    fn in_number(&mut self, c: char, n: Num) -> Step {
        let next = match (n, c) {
            (Num::Minus, '0') => Some(Num::Zero),
            (Num::Minus, '1'..='9') => Some(Num::Int),
            (Num::Int, '0'..='9') => Some(Num::Int),
            (Num::Zero | Num::Int, '.') => Some(Num::Point),
            (Num::Zero | Num::Int | Num::Frac, 'e' | 'E') => Some(Num::Exp),
            (Num::Point | Num::Frac, '0'..='9') => Some(Num::Frac),
            (Num::Exp, '+' | '-') => Some(Num::ExpSign),
            (Num::Exp | Num::ExpSign | Num::ExpDigits, '0'..='9') => Some(Num::ExpDigits),
            _ => None,
        };
        if let Some(next) = next {
            self.state = State::Num(next);
            return Step::More;
        }
        if !n.can_end() {
            return Step::Error;
        }
        // The number ended one character ago; this character belongs to what follows it.
        if self.stack.is_empty() {
            self.state = State::Done;
            return Step::DoneBefore;
        }
        self.state = State::After;
        self.step(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `text`; returns the byte length of the first complete value, or None.
    fn scan(text: &str) -> Option<usize> {
        let mut s = ValueScanner::new();
        for (i, c) in text.char_indices() {
            match s.push(c) {
                Step::More => {}
                Step::Done => return Some(i + c.len_utf8()),
                Step::DoneBefore => return Some(i),
                Step::Error => return None,
            }
        }
        // A bare number only ends at the next character.
        (s.push(' ') == Step::DoneBefore).then_some(text.len())
    }

    #[test]
    fn agrees_with_serde_on_valid_values() {
        let cases = [
            r#"{}"#,
            r#"[]"#,
            r#"{"a": 1, "b": [true, false, null, -0.5e+3, "x\"y\\z\u00e9"], "c": {"d": {}}}"#,
            r#"  [ 1 , [ ] , { } , "" ]"#,
            r#""just a string""#,
            r#"{"emoji": "😀 — ünïcode", "n": 10, "neg": -12.25E-2}"#,
            "123",
            "0",
            "true",
        ];
        for c in cases {
            assert!(serde_json::from_str::<serde_json::Value>(c).is_ok(), "{c}");
            assert_eq!(scan(c), Some(c.len()), "{c}");
        }
    }

    #[test]
    fn finds_the_end_of_a_value_followed_by_more_text() {
        assert_eq!(scan(r#"{"a": "}"}}</tool_call>"#), Some(10));
        assert_eq!(scan("[1, [2]]; next"), Some(8));
        assert_eq!(scan("12,"), Some(2));
    }

    #[test]
    fn rejects_what_can_never_be_json() {
        for c in [
            r#"{"a" 1}"#,
            r#"{a: 1}"#,
            r#"[1,]"#,
            r#"{"a": 1,}"#,
            r#"{"a": tru}"#,
            r#"{"a": 01}"#,
            r#"{"a": 1.}"#,
            r#"{"a": "\x"}"#,
            r#"{"a": "\u12g4"}"#,
            "{\"a\": \"line\nbreak\"}",
            r#"[1}"#,
            r#"hello"#,
        ] {
            assert_eq!(scan(c), None, "{c}");
            assert!(serde_json::from_str::<serde_json::Value>(c).is_err(), "{c}");
        }
    }

    #[test]
    fn incomplete_values_are_not_complete() {
        for c in [r#"{"a": 1"#, r#"["x"#, r#""abc"#, "-", "tr", r#"{"a": {"b": []}"#] {
            assert_eq!(scan(c), None, "{c}");
        }
    }
}
