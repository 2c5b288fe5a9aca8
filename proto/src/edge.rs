//! What both ends of the socket agree on at the edge: bounds on user-supplied strings, the
//! metadata that says a call came through the HTTP gateway, and the one test for "the transport
//! failed" versus "the daemon answered" that the gateway, its health route and the CLI share.

use std::borrow::Cow;

/// Metadata key naming the kind of client behind a call; the gateway sets it to [`HTTP_CLIENT`]
/// on every call, so the daemon can apply its stricter rules for HTTP (no hub ids or paths unless
/// configured). Anything else on the socket is the socket owner's own tool.
pub const CLIENT_METADATA: &str = "zeta-client";
/// The value of [`CLIENT_METADATA`] for calls made on behalf of an HTTP client.
pub const HTTP_CLIENT: &str = "http";
/// Metadata key for a machine-readable error code (`invalid_model`, `model_pinned`, ...) the
/// daemon adds to some statuses, for the gateway's OpenAI `code` field.
pub const CODE_METADATA: &str = "zeta-code";

/// The roles a chat message may have. `developer` (OpenAI's newer name) reaches templates as
/// `system`.
pub const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// The rules every chat message follows, whichever API it came through (OpenAI's): a known role;
/// tool calls only in the assistant's messages; content unless the assistant's message carries
/// calls; a tool message names the call it answers. On error: the field at fault (under
/// `messages[i].`) and what is wrong.
pub fn check_message(
    role: &str,
    has_content: bool,
    has_tool_calls: bool,
    tool_call_id: &str,
) -> Result<(), (&'static str, String)> {
    if !ROLES.contains(&role) {
        return Err(("role", format!("'{}' is not one of {}", quote(role), ROLES.join(", "))));
    }
    if has_tool_calls && role != "assistant" {
        return Err(("tool_calls", "only assistant messages carry tool calls".into()));
    }
    // Only an assistant turn that calls tools may go without content.
    let calls_only = role == "assistant" && has_tool_calls;
    if !has_content && !calls_only {
        // By sound: "an assistant", "a user".
        let article = if role.starts_with(['a', 'e', 'i', 'o']) { "an" } else { "a" };
        return Err(("content", format!("{article} {role} message needs 'content'")));
    }
    if role == "tool" && tool_call_id.is_empty() {
        return Err(("tool_call_id", "a tool message needs the 'tool_call_id' it answers".into()));
    }
    Ok(())
}

/// Most stop sequences a request may give.
pub const MAX_STOP_STRINGS: usize = 16;
/// Longest stop sequence, in bytes.
pub const MAX_STOP_BYTES: usize = 1024;
/// Most alternatives per token a request may ask log-probabilities of (`top_logprobs`).
pub const MAX_TOP_LOGPROBS: i64 = 20;
/// The biggest schema or grammar a request may carry, in bytes: compiling one is work the daemon
/// does before admitting the request.
pub const MAX_CONSTRAINT_BYTES: usize = 256 * 1024;
/// Inputs in one embeddings request (OpenAI's limit).
pub const MAX_EMBED_INPUTS: usize = 2048;

/// The longest request id a caller may give, in bytes (it is in every log line of the request).
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// The longest model reference (alias, path or hub id) a request may carry, in bytes.
pub const MAX_MODEL_REF_BYTES: usize = 512;
/// The longest message a status carries, in bytes: statuses travel in HTTP/2 headers, whose
/// total size peers cap (16 KiB by default), and one oversized header breaks the whole shared
/// connection, not just the one call.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 2048;
/// How much of a user-supplied string a message quotes, in bytes.
pub const QUOTE_BYTES: usize = 96;

/// The host part of a `Host` header or a listen address (`name`, `name:port`, `[v6]:port`),
/// lower-cased, without a trailing dot.
pub fn host_name(v: &str) -> String {
    let v = v.trim();
    let host = if let Some(rest) = v.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        v.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(v, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Host names that always mean this machine (`localhost`, `*.localhost`, loopback addresses).
pub fn loopback_name(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `s` cut to at most `max` bytes on a character boundary, with an ellipsis when cut.
pub fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

/// A user-supplied string as messages quote it: clipped to [`QUOTE_BYTES`].
pub fn quote(s: &str) -> Cow<'_, str> {
    clip(s, QUOTE_BYTES)
}

/// Whether a status came from the transport (the socket refused, the connection broke, a
/// protocol error) rather than from the daemon's answer. Statuses the daemon sends arrive as
/// `grpc-status` trailers and carry no source error; tonic attaches the underlying hyper, h2 or
/// I/O error to every status it makes from a transport failure.
pub fn transport_failed(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// Whether a transport failure means nothing is listening (no socket, connection refused), as
/// opposed to a connection that broke while in use.
pub fn daemon_absent(status: &tonic::Status) -> bool {
    let mut err: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = err {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return matches!(io.kind(), K::NotFound | K::ConnectionRefused | K::PermissionDenied);
        }
        err = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for (v, want) in [
            ("127.0.0.1:8000", "127.0.0.1"),
            ("localhost", "localhost"),
            ("[::1]:8000", "::1"),
            ("Evil.Example:80", "evil.example"),
            ("localhost.", "localhost"),
        ] {
            assert_eq!(host_name(v), want, "{v}");
        }
        assert!(loopback_name("127.0.0.2") && loopback_name("::1") && loopback_name("app.localhost"));
        assert!(
            !loopback_name("evil.example") && !loopback_name("localhost.evil.example") && !loopback_name("10.0.0.1")
        );
    }

    #[test]
    fn clip_keeps_char_boundaries_and_the_limit() {
        assert_eq!(clip("short", 10), "short");
        let long = "é".repeat(3000);
        let c = clip(&long, 100);
        assert!(c.len() <= 100 && c.ends_with('…'), "{c}");
        assert!(quote(&"x".repeat(20_000)).len() <= QUOTE_BYTES);
    }

    #[test]
    fn a_message_without_content_is_named_in_plain_english() {
        assert_eq!(check_message("user", false, false, "").unwrap_err().1, "a user message needs 'content'");
        assert_eq!(check_message("assistant", false, false, "").unwrap_err().1, "an assistant message needs 'content'");
        assert!(check_message("assistant", false, true, "").is_ok(), "a turn that only calls tools");
    }

    #[test]
    fn answered_statuses_are_not_transport_failures() {
        assert!(!transport_failed(&tonic::Status::unavailable("busy")));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let s = tonic::Status::from_error(Box::new(io));
        assert!(transport_failed(&s));
    }
}
