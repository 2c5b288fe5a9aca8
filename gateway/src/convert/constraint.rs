//! Output constraints: `response_format` (JSON object or JSON Schema) and the `grammar`
//! extension, bounded in size before they reach the daemon's grammar compiler.

use serde_json::Value;
use zeta_proto::v1;

use super::fields::{boolean, present, sized, string, type_name};
use super::tools::valid_function_name;
use crate::error::ApiError;

/// A JSON-schema constraint from the object holding `schema` (chat's `response_format.json_schema`,
/// the Responses API's `text.format`).
pub(crate) fn json_schema(holder: &Value, field: &str) -> Result<v1::Constraint, ApiError> {
    use v1::constraint::Kind;
    let schema = match holder.get("schema") {
        Some(s @ (Value::Object(_) | Value::Bool(true))) => s,
        None | Some(Value::Null) => return Err(ApiError::invalid(format!("{field}.schema"), "is required")),
        Some(other) => {
            return Err(ApiError::invalid(
                format!("{field}.schema"),
                format!("must be a JSON Schema object, got {}", type_name(other)),
            ));
        }
    };
    if let Some(name) = holder.get("name").filter(|n| !n.is_null())
        && !name.as_str().is_some_and(valid_function_name)
    {
        return Err(ApiError::invalid(format!("{field}.name"), "must be 1-64 letters, digits, '_', '-' or '.'"));
    }
    boolean(&holder.get("strict").cloned(), &format!("{field}.strict"))?;
    Ok(v1::Constraint { kind: Some(Kind::JsonSchema(sized(schema.to_string(), &format!("{field}.schema"))?)) })
}

/// The output constraint of `response_format` (`text`, `json_object`, `json_schema`) and the
/// `grammar` extension; at most one of them constrains.
pub(crate) fn constraint(format: &Option<Value>, grammar: &Option<Value>) -> Result<Option<v1::Constraint>, ApiError> {
    use v1::constraint::Kind;
    let from_format = match present(format) {
        None => None,
        Some(v) => match v.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("json_object") => Some(v1::Constraint { kind: Some(Kind::JsonObject(true)) }),
            Some("json_schema") => {
                let holder = v.get("json_schema").filter(|h| h.is_object()).ok_or_else(|| {
                    ApiError::invalid("response_format.json_schema", "must be an object with a 'schema'")
                })?;
                Some(json_schema(holder, "response_format.json_schema")?)
            }
            Some(other) => {
                return Err(ApiError::invalid(
                    "response_format.type",
                    format!("'{}' is not one of text, json_object, json_schema", zeta_proto::edge::quote(other)),
                ));
            }
            None => return Err(ApiError::invalid("response_format", "must be an object with a 'type'")),
        },
    };
    let from_grammar = match string(grammar, "grammar")? {
        None => None,
        Some(g) if g.trim().is_empty() => return Err(ApiError::invalid("grammar", "is empty")),
        Some(g) => Some(v1::Constraint { kind: Some(Kind::Grammar(sized(g.to_string(), "grammar")?)) }),
    };
    if from_format.is_some() && from_grammar.is_some() {
        return Err(ApiError::invalid("grammar", "give either 'grammar' or a JSON 'response_format', not both"));
    }
    Ok(from_format.or(from_grammar))
}

/// The request field a constraint error is about when a request may carry either: `grammar` when
/// it sent one (the two exclude each other), else `response_format`.
pub(crate) fn constraint_field(grammar: &Option<Value>) -> &'static str {
    if present(grammar).is_some() { "grammar" } else { "response_format" }
}
