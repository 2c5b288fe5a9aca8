//! The fake hub's HTTP/1.1 plumbing: reading one request head, writing one reply (optionally
//! cut short or with a flipped byte), byte ranges and percent-decoding. One request per
//! connection (`Connection: close`) keeps it small and makes cutting a transfer trivial.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed request head.
pub(super) struct Request {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
}

/// What to answer: status, headers and where the body comes from.
pub(super) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

pub(super) enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of the file at `path` from `start`; `repo_file` names it for the switches.
    File {
        repo_file: String,
        path: PathBuf,
        start: u64,
        len: u64,
    },
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply { status, headers: Vec::new(), body: Body::Bytes(body.into()) }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// An error the way the hub sends one: JSON body plus `X-Error-Code` / `X-Error-Message`.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::json!({ "error": message }).to_string();
        Reply::new(status, body)
            .header("Content-Type", "application/json")
            .header("X-Error-Code", code)
            .header("X-Error-Message", message)
    }
}

/// Reads one request head; `None` when the peer closed or sent garbage.
pub(super) async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut chunk)).await??;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buf.len() > 64 << 10 {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let target = request_line.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Some(Request { method, target, headers }))
}

/// Writes `reply`; a file body stops after `limit` bytes (then the connection just closes, which
/// is the interruption under test) and has its first byte flipped when `flip`.
pub(super) async fn write_reply(
    stream: &mut TcpStream,
    head_only: bool,
    reply: Reply,
    limit: Option<u64>,
    flip: bool,
) -> std::io::Result<()> {
    let body_len = match &reply.body {
        Body::Bytes(b) => b.len() as u64,
        Body::File { len, .. } => *len,
    };
    let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {body_len}\r\nConnection: close\r\n\r\n"));
    stream.write_all(out.as_bytes()).await?;
    if head_only {
        return stream.shutdown().await;
    }
    match reply.body {
        Body::Bytes(bytes) => stream.write_all(&bytes).await?,
        Body::File { path, start, len, .. } => {
            let limit = limit.map_or(len, |cut| cut.min(len));
            let mut file = std::fs::File::open(&path)?;
            file.seek(SeekFrom::Start(start))?;
            let mut left = limit;
            let mut first = true;
            let mut buf = vec![0u8; 64 << 10];
            while left > 0 {
                let want = buf.len().min(left as usize);
                let n = file.read(&mut buf[..want])?;
                if n == 0 {
                    break;
                }
                if first && flip {
                    buf[0] ^= 0xff;
                }
                first = false;
                stream.write_all(&buf[..n]).await?;
                left -= n as u64;
            }
            if limit < len {
                stream.flush().await?;
                return Ok(());
            }
        }
    }
    stream.shutdown().await
}

/// `bytes=a-`, `bytes=a-b` or `bytes=-n` as an inclusive range within `size`.
pub(super) fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => (size.checked_sub(n.parse().ok()?)?, size.checked_sub(1)?),
        (a, "") => (a.parse().ok()?, size.checked_sub(1)?),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size.checked_sub(1)?)),
    };
    (start <= end && start < size).then_some((start, end))
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_decoding() {
        assert_eq!(parse_range("bytes=10-", 100), Some((10, 99)));
        assert_eq!(parse_range("bytes=10-19", 100), Some((10, 19)));
        assert_eq!(parse_range("bytes=-5", 100), Some((95, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(percent_decode("refs%2Fpr%2F1"), "refs/pr/1");
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
