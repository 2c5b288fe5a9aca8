//! Typed readers for the request bodies' JSON fields: each returns the field's value or an
//! error that names the field, the allowed range and the value it got, so every endpoint words
//! the same mistake the same way.

use serde_json::Value;

use crate::error::ApiError;

/// How an error names the JSON type a field had ("a string", "null").
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The field's value unless it is absent or `null` (OpenAI's clients send `null` for unset).
pub(crate) fn present(v: &Option<Value>) -> Option<&Value> {
    v.as_ref().filter(|v| !v.is_null())
}

/// An optional number within `lo..=hi`.
pub(crate) fn number(v: &Option<Value>, name: &str, lo: f64, hi: f64) -> Result<Option<f32>, ApiError> {
    let Some(v) = present(v) else { return Ok(None) };
    let x = v
        .as_f64()
        .ok_or_else(|| ApiError::invalid(name, format!("'{name}' must be a number, got {}", type_name(v))))?;
    if !(lo..=hi).contains(&x) {
        return Err(ApiError::invalid(name, format!("'{name}' must be between {lo} and {hi}, got {x}")));
    }
    Ok(Some(x as f32))
}

/// An optional `top_p`: a probability mass in (0, 1] (0 would keep no token at all).
pub(crate) fn top_p(v: &Option<Value>, name: &str) -> Result<Option<f32>, ApiError> {
    let p = number(v, name, 0.0, 1.0)?;
    if p == Some(0.0) {
        return Err(ApiError::invalid(name, format!("'{name}' must be greater than 0 (and at most 1), got 0")));
    }
    Ok(p)
}

/// An optional integer within `lo..=hi` (a float with no fraction counts, as JSON clients send `1.0`).
pub(crate) fn integer(v: &Option<Value>, name: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
    let Some(v) = present(v) else { return Ok(None) };
    let range = || ApiError::invalid(name, format!("'{name}' must be between {lo} and {hi}, got {}", describe(v)));
    let x = match v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64)) {
        Some(x) => x,
        // A whole number past what 64 bits hold is out of range, not "not an integer".
        None if v.as_u64().is_some() || v.as_f64().is_some_and(|f| f.fract() == 0.0) => return Err(range()),
        None => return Err(ApiError::invalid(name, format!("'{name}' must be an integer, got {}", describe(v)))),
    };
    if !(lo..=hi).contains(&x) {
        return Err(ApiError::invalid(name, format!("'{name}' must be between {lo} and {hi}, got {x}")));
    }
    Ok(Some(x))
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        other => type_name(other).to_string(),
    }
}

/// An optional boolean.
pub(crate) fn boolean(v: &Option<Value>, name: &str) -> Result<Option<bool>, ApiError> {
    let Some(v) = present(v) else { return Ok(None) };
    v.as_bool()
        .map(Some)
        .ok_or_else(|| ApiError::invalid(name, format!("'{name}' must be a boolean, got {}", type_name(v))))
}

/// An optional string.
pub(crate) fn string<'a>(v: &'a Option<Value>, name: &str) -> Result<Option<&'a str>, ApiError> {
    let Some(v) = present(v) else { return Ok(None) };
    v.as_str()
        .map(Some)
        .ok_or_else(|| ApiError::invalid(name, format!("'{name}' must be a string, got {}", type_name(v))))
}

/// A known field this server does not implement: refused when set, never silently ignored.
pub(super) fn refuse_if_set(v: &Option<Value>, name: &str, why: &str) -> Result<(), ApiError> {
    match present(v) {
        Some(_) => Err(ApiError::unsupported(name, format!("'{name}' is not supported by this server: {why}"))),
        None => Ok(()),
    }
}

/// An optional array field (absent or null: empty).
pub(crate) fn array<'a>(v: &'a Option<Value>, name: &str) -> Result<&'a [Value], ApiError> {
    match present(v) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(ApiError::invalid(name, format!("'{name}' must be an array, got {}", type_name(other)))),
    }
}

/// Token ids of a prompt: each an integer that fits a token id (the daemon then checks them
/// against the model's vocabulary).
pub(super) fn token_ids(a: &[Value], param: &str) -> Result<Vec<u32>, ApiError> {
    a.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(|| {
                ApiError::invalid(
                    format!("{param}[{i}]"),
                    format!("token id {v} is not an integer from 0 to {}", u32::MAX),
                )
            })
        })
        .collect()
}

/// `stop`: one string or a bounded array of non-empty strings, each bounded in bytes.
pub(crate) fn stop_list(v: &Option<Value>) -> Result<Vec<String>, ApiError> {
    let list = stop_strings(v)?;
    let max = zeta_proto::edge::MAX_STOP_BYTES;
    if let Some((i, s)) = list.iter().enumerate().find(|(_, s)| s.len() > max) {
        let param =
            if matches!(present(v), Some(Value::String(_))) { "stop".to_string() } else { format!("stop[{i}]") };
        return Err(ApiError::invalid(param, format!("a stop sequence may be at most {max} bytes, got {}", s.len())));
    }
    Ok(list)
}

fn stop_strings(v: &Option<Value>) -> Result<Vec<String>, ApiError> {
    match present(v) {
        None => Ok(vec![]),
        Some(Value::String(s)) if s.is_empty() => {
            Err(ApiError::invalid("stop", "a stop sequence must be a non-empty string"))
        }
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => {
            let limit = zeta_proto::edge::MAX_STOP_STRINGS;
            if items.len() > limit {
                return Err(ApiError::invalid(
                    "stop",
                    format!("'stop' may hold at most {limit} strings, got {}", items.len()),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s.as_str().filter(|s| !s.is_empty()).map(String::from).ok_or_else(|| {
                        ApiError::invalid(format!("stop[{i}]"), "each stop sequence must be a non-empty string")
                    })
                })
                .collect()
        }
        Some(other) => Err(ApiError::invalid(
            "stop",
            format!("'stop' must be a string or an array of strings, got {}", type_name(other)),
        )),
    }
}

/// `logit_bias`: token id (as a string key) to a bias in -100..=100.
pub(super) fn logit_bias(v: &Option<Value>) -> Result<std::collections::HashMap<u32, f32>, ApiError> {
    let Some(v) = present(v) else { return Ok(Default::default()) };
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid("logit_bias", "'logit_bias' must be an object of token id to bias"))?;
    obj.iter()
        .map(|(k, b)| {
            let id: u32 = k.parse().map_err(|_| {
                ApiError::invalid("logit_bias", format!("'{}' is not a token id", zeta_proto::edge::quote(k)))
            })?;
            let bias = number(&Some(b.clone()), "logit_bias", -100.0, 100.0)?.unwrap_or(0.0);
            Ok((id, bias))
        })
        .collect()
}

/// `n`: only one choice per request.
pub(super) fn n(v: &Option<Value>) -> Result<(), ApiError> {
    match integer(v, "n", 1, 128)? {
        None | Some(1) => Ok(()),
        Some(k) => Err(ApiError::unsupported("n", format!("only n=1 is supported, got n={k}"))),
    }
}

/// A constraint's text, at most [`zeta_proto::edge::MAX_CONSTRAINT_BYTES`].
pub(super) fn sized(text: String, field: &str) -> Result<String, ApiError> {
    use zeta_proto::edge::MAX_CONSTRAINT_BYTES;
    if text.len() > MAX_CONSTRAINT_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("is {} bytes, above the limit of {MAX_CONSTRAINT_BYTES}", text.len()),
        ));
    }
    Ok(text)
}
