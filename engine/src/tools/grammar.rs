//! The grammars (llguidance's Lark) that keep tool calls valid under their functions' schemas:
//! what follows a forced call's opening ([`ToolFormat::forced_grammar`]), and a whole answer
//! under `tool_choice` auto with strict tools ([`ToolFormat::auto_grammar`]), in each family's
//! format. Arguments are JSON under the function's schema (compact, see `constraint`); the
//! spacing around a call's parts is the model's choice (`SEP?`), since a grammar that insisted on
//! one spelling would push the model off the tokens it writes calls with.

use serde_json::Value;

use super::{ForcedChoice, ToolFormat};
use crate::constraint::compact_parameters;

/// A Lark string literal (JSON's escapes are Lark's).
fn lit(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// Optional spacing between a call's parts.
const SEP: &str = "SEP: /[ \\n]{1,2}/";

/// Rules `c_i` (one per tool: its opening, then arguments `a_i` under its schema) and `a_i`;
/// `opening(name)` is the text before the arguments, `close` the text after them.
fn call_rules(tools: &[&(String, Value)], opening: impl Fn(&str) -> Option<String>, close: &str) -> Vec<String> {
    let mut rules = Vec::new();
    for (i, (name, schema)) in tools.iter().enumerate() {
        let open = opening(name).map(|o| format!("{} SEP? ", lit(&o))).unwrap_or_default();
        rules.push(format!("c_{i}: SEP? {open}a_{i} {}", lit(close)));
        rules.push(format!("a_{i}: %json {}", compact_parameters(schema)));
    }
    rules
}

fn alternatives(n: usize) -> String {
    (0..n).map(|i| format!("c_{i}")).collect::<Vec<_>>().join(" | ")
}

impl ToolFormat {
    /// The grammar of what follows [`ToolFormat::forced_prefix`]: one call whose arguments are
    /// valid under the called function's parameter schema, closed as the format closes a call.
    /// `tools`: each offered function's name and parameter schema. `None` when no offered tool
    /// can be called.
    pub fn forced_grammar(&self, choice: &ForcedChoice, tools: &[(String, Value)]) -> Option<String> {
        let close = match self {
            ToolFormat::Hermes => "}\n</tool_call>",
            ToolFormat::Llama3 => "}",
            ToolFormat::Mistral | ToolFormat::Phi4Mini => "}]",
        };
        let opening = |name: &str| match (self, choice) {
            (_, ForcedChoice::Function(_)) => None,
            (ToolFormat::Hermes, ForcedChoice::Required) => Some(format!("{{\"name\": {}, \"arguments\":", lit(name))),
            (ToolFormat::Llama3, ForcedChoice::Required) => Some(format!("{}, \"parameters\":", lit(name))),
            (ToolFormat::Mistral | ToolFormat::Phi4Mini, ForcedChoice::Required) => {
                Some(format!("[{{\"name\": {}, \"arguments\":", lit(name)))
            }
        };
        let callable: Vec<&(String, Value)> = match choice {
            ForcedChoice::Function(f) => tools.iter().filter(|(n, _)| n == f).collect(),
            ForcedChoice::Required => tools.iter().collect(),
        };
        if callable.is_empty() {
            return None;
        }
        let mut rules = vec![format!("start: {}", alternatives(callable.len()))];
        rules.extend(call_rules(&callable, opening, close));
        rules.push(SEP.into());
        Some(rules.join("\n") + "\n")
    }

    /// The grammar of a whole answer under `tool_choice` auto with strict tools: free text, or
    /// calls whose arguments are valid under each function's schema (`tools`: name and schema; a
    /// non-strict tool's schema is any object). `special(text)`: the id of a special token, for
    /// markers some vocabularies make one (`[TOOL_CALLS]`, `<|python_tag|>`).
    ///
    /// - Hermes: text that never opens a call, then tagged calls.
    /// - Llama 3: text that does not begin with `{`, or the calls, `;`-separated, as the whole
    ///   answer (after `<|python_tag|>` where the vocabulary has it).
    /// - Mistral: text, or `[TOOL_CALLS]` and a JSON list of calls.
    /// - Phi-4-mini: text, or `<|tool_call|>`, a JSON list of calls and `<|/tool_call|>`.
    pub fn auto_grammar(&self, tools: &[(String, Value)], special: &dyn Fn(&str) -> Option<u32>) -> Option<String> {
        if tools.is_empty() {
            return None;
        }
        let all: Vec<&(String, Value)> = tools.iter().collect();
        let body = alternatives(all.len());
        let mut rules = match self {
            ToolFormat::Hermes => {
                // The text before a first call is a lexeme ended by the call's tag (`suffix`,
                // kept in the output): a plain text lexeme would be extended greedily over the
                // tag's first bytes and could never give way to the call.
                let open = |name: &str| Some(format!("{{\"name\": {}, \"arguments\":", lit(name)));
                let mut r = vec![
                    "start: TEXT | before body (SEP? call)*".to_string(),
                    format!("before[suffix={}]: /(?s:.*)/", lit("<tool_call>")),
                    format!("call: {} body", lit("<tool_call>")),
                    format!("body: ({body}) SEP? {}", lit("</tool_call>")),
                    "TEXT: /(?s:.*)/ & ~/(?s:.*<tool_call>.*)/".into(),
                ];
                r.extend(call_rules(&all, open, "}"));
                r
            }
            ToolFormat::Llama3 => {
                let tag = special("<|python_tag|>").map(|id| format!("<[{id}]>? ")).unwrap_or_default();
                let open = |name: &str| Some(format!("{{\"name\": {}, \"parameters\":", lit(name)));
                let mut r = vec![
                    format!("start: TEXT | {tag}call (\";\" call)*"),
                    format!("call: {body}"),
                    "TEXT: /(?s:\\s*([^{\\s].*)?)/".into(),
                ];
                r.extend(call_rules(&all, open, "}"));
                r
            }
            ToolFormat::Mistral => list_after_marker(&all, &body, "[TOOL_CALLS]", None, special),
            ToolFormat::Phi4Mini => list_after_marker(&all, &body, "<|tool_call|>", Some("<|/tool_call|>"), special),
        };
        rules.push(SEP.into());
        Some(rules.join("\n") + "\n")
    }
}

/// Text, or `marker` and a JSON list of calls (then `close`, where the format has one). A marker
/// that the vocabulary makes one special token is matched as that token, which free text can
/// never contain; a plain-text marker is excluded from the text instead.
fn list_after_marker(
    tools: &[&(String, Value)],
    body: &str,
    marker: &str,
    close: Option<&str>,
    special: &dyn Fn(&str) -> Option<u32>,
) -> Vec<String> {
    let token = |m: &str| special(m).map(|id| format!("<[{id}]>"));
    let (open, text) = match token(marker) {
        Some(t) => (t, "TEXT: /(?s:.*)/".to_string()),
        None => {
            let escaped: String = marker
                .chars()
                .map(|c| if "\\.+*?()|[]{}^$".contains(c) { format!("\\{c}") } else { c.to_string() })
                .collect();
            (lit(marker), format!("TEXT: /(?s:.*)/ & ~/(?s:.*{escaped}.*)/"))
        }
    };
    let close = close.map(|c| format!(" {}?", token(c).unwrap_or_else(|| lit(c)))).unwrap_or_default();
    let call_open = |name: &str| Some(format!("{{\"name\": {}, \"arguments\":", lit(name)));
    let mut r =
        vec![format!("start: TEXT | {open} SEP? \"[\" call (\",\" call)* \"]\"{close}"), format!("call: {body}"), text];
    r.extend(call_rules(tools, call_open, "}"));
    r
}
