//! The log subscriber the daemon and the gateway share: lines of text (or JSON objects) on
//! standard error, filtered by `RUST_LOG` (default `info`).
//!
//! Text lines escape every control character in field values and messages (`\n`, `\u{1b}`),
//! because some of them carry what a client sent (a model name, a schema's error): unescaped, an
//! unauthenticated request could write a line that looks like the server's own, or terminal
//! escapes, into the log. JSON objects are escaped by JSON itself.

use std::fmt::Write as _;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;

/// `text` with its control characters written as escapes (`\n`, `\t`, `\u{1b}`): one log event
/// stays one line, and a table row stays one row with no terminal escapes in it.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.into()
}

/// Installs the global subscriber: JSON objects when `json`, else text lines (coloured on a
/// terminal).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().with_current_span(true).init();
        return;
    }
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        if field.name() == "message" {
            write!(w, "{}", escape_controls(&text))
        } else {
            write!(w, "{}={}", field.name(), escape_controls(&text))
        }
    })
    .delimited(" ");
    builder.fmt_fields(fields).init();
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("plain text, ünïcode"), "plain text, ünïcode");
        assert_eq!(
            escape_controls("nope\n2026-12-02T18:40:00Z ERROR forged\r\tx\u{1b}[31mRED\u{7f}"),
            "nope\\n2026-12-02T18:40:00Z ERROR forged\\r\\tx\\u{1b}[31mRED\\u{7f}"
        );
    }
}
