//! Lets every standard gRPC client in over the Unix socket. gRPC's C core (Python's `grpcio`,
//! C++, Ruby, PHP) sends the percent-encoded socket path as `:authority` (`tmp%2Fzeta.sock`) and
//! grpc-java the raw path; h2 refuses both as malformed and resets the stream with
//! PROTOCOL_ERROR, with no option to relax it (hyperium/h2#487). A local socket gives the
//! authority no meaning, so [`LocalAuthority`] sits between the socket and h2 and rewrites such
//! a value into one h2 accepts — `/`, `%` and any other byte a URI authority cannot hold become
//! `-` — and passes every other byte through untouched. The value keeps its length, so the HPACK
//! dynamic tables on both sides keep the same sizes and the client's later references to the
//! entry stay right (see [`hpack`]).
//!
//! Only the client's HEADERS and CONTINUATION frames are read; every other frame streams through
//! as it arrives. A client whose first header block needs nothing (tonic's, grpc-go's: they send
//! `localhost`) is left alone from then on, reads going straight to the socket, so the gateway's
//! connection costs nothing. Anything the scanner cannot follow (a protocol error h2 will reject
//! anyway, a header block past [`MAX_BLOCK`]) also makes it stand aside for the connection.

mod hpack;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::codegen::http::uri::Authority;
use tonic::transport::server::Connected;

const PREFACE_LEN: usize = 24;
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest payload every HTTP/2 peer must accept; rewritten blocks are split to fit it.
const MIN_MAX_FRAME: usize = 16_384;
/// A header block the scanner holds back before giving up; far past any gRPC request's headers,
/// and it keeps a CONTINUATION flood from growing memory here before h2's own limits see it.
pub const MAX_BLOCK: usize = 1 << 20;

/// A connection whose inbound `:authority` values are made acceptable to h2.
#[derive(Debug)]
pub struct LocalAuthority<S> {
    inner: S,
    scan: Scanner,
    scratch: Box<[u8]>,
}

impl<S> LocalAuthority<S> {
    /// Wraps a freshly accepted connection (before the client's preface).
    pub fn new(inner: S) -> Self {
        LocalAuthority { inner, scan: Scanner::default(), scratch: vec![0; 16 * 1024].into_boxed_slice() }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LocalAuthority<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.scan.drain(buf) || this.scan.eof {
                return Poll::Ready(Ok(()));
            }
            if this.scan.off && this.scan.pending.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut raw = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut raw))?;
            match raw.filled() {
                [] => this.scan.finish(),
                bytes => this.scan.feed(bytes),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LocalAuthority<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for LocalAuthority<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The value h2 will see for a client's `:authority`, when the client's would be refused.
fn acceptable(value: &[u8]) -> Option<Vec<u8>> {
    if value.is_empty() || Authority::try_from(value).is_ok() {
        return None;
    }
    let keep = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    Some(value.iter().map(|&b| if keep(b) { b } else { b'-' }).collect())
}

/// A HEADERS frame waiting for the CONTINUATION frames that end its block.
#[derive(Debug)]
struct Block {
    stream: [u8; 4],
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames as received, passed on unchanged when nothing needs rewriting.
    raw: Vec<u8>,
}

/// The inbound byte stream's state: what has been understood, and what is ready for h2.
#[derive(Debug)]
struct Scanner {
    preface: usize,
    /// Payload bytes of the current non-header frame still to pass through.
    forward: usize,
    /// Bytes received but not yet understood (a partial frame header or header frame).
    pending: Vec<u8>,
    block: Option<Block>,
    table: hpack::Table,
    /// Stood aside: everything passes through.
    off: bool,
    /// Some block of this connection needed a rewrite, so later ones are read too.
    rewrote: bool,
    out: Vec<u8>,
    at: usize,
    eof: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            preface: PREFACE_LEN,
            forward: 0,
            pending: Vec::new(),
            block: None,
            table: hpack::Table::default(),
            off: false,
            rewrote: false,
            out: Vec::new(),
            at: 0,
            eof: false,
        }
    }
}

impl Scanner {
    /// Copies ready bytes into `buf`; whether any were.
    fn drain(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let ready = &self.out[self.at..];
        if ready.is_empty() {
            return false;
        }
        let n = ready.len().min(buf.remaining());
        buf.put_slice(&ready[..n]);
        self.at += n;
        if self.at == self.out.len() {
            self.out.clear();
            self.at = 0;
        }
        true
    }

    /// The peer closed its side: whatever is held back goes to h2 as it came.
    fn finish(&mut self) {
        self.stand_aside();
        let pending = std::mem::take(&mut self.pending);
        self.out.extend_from_slice(&pending);
        self.eof = true;
    }

    fn stand_aside(&mut self) {
        if let Some(b) = self.block.take() {
            self.out.extend_from_slice(&b.raw);
        }
        self.off = true;
    }

    fn feed(&mut self, bytes: &[u8]) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.extend_from_slice(bytes);
        let mut i = 0;
        while i < pending.len() {
            let rest = &pending[i..];
            if self.off {
                self.out.extend_from_slice(rest);
                i = pending.len();
                break;
            }
            let through = if self.preface > 0 { &mut self.preface } else { &mut self.forward };
            if *through > 0 {
                let n = rest.len().min(*through);
                *through -= n;
                self.out.extend_from_slice(&rest[..n]);
                i += n;
                continue;
            }
            if rest.len() < FRAME_HEADER {
                break;
            }
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let kind = rest[3];
            if kind != HEADERS && kind != CONTINUATION {
                if self.block.is_some() {
                    // Only CONTINUATION may follow an unfinished block; h2 will say so.
                    self.stand_aside();
                    continue;
                }
                self.out.extend_from_slice(&rest[..FRAME_HEADER]);
                self.forward = len;
                i += FRAME_HEADER;
                continue;
            }
            if len > MAX_BLOCK {
                self.stand_aside();
                continue;
            }
            if rest.len() < FRAME_HEADER + len {
                break;
            }
            self.header_frame(&rest[..FRAME_HEADER + len]);
            i += FRAME_HEADER + len;
        }
        pending.drain(..i);
        self.pending = pending;
    }

    fn header_frame(&mut self, frame: &[u8]) {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = [frame[5] & 0x7f, frame[6], frame[7], frame[8]];
        let payload = &frame[FRAME_HEADER..];
        let block = match (kind, self.block.take()) {
            (HEADERS, None) => {
                let Some((priority, fragment)) = split_headers(flags, payload) else {
                    self.out.extend_from_slice(frame);
                    return self.stand_aside();
                };
                Block { stream, flags, priority, fragment: fragment.to_vec(), raw: frame.to_vec() }
            }
            (CONTINUATION, Some(mut b)) if b.stream == stream && b.fragment.len() + payload.len() <= MAX_BLOCK => {
                b.fragment.extend_from_slice(payload);
                b.raw.extend_from_slice(frame);
                b
            }
            (_, held) => {
                self.block = held;
                self.stand_aside();
                self.out.extend_from_slice(frame);
                return;
            }
        };
        if flags & END_HEADERS == 0 {
            self.block = Some(block);
            return;
        }
        match self.table.rewrite(&block.fragment, acceptable) {
            Ok(None) => {
                self.out.extend_from_slice(&block.raw);
                // A client that sends an acceptable authority first keeps sending it.
                if !self.rewrote {
                    self.off = true;
                }
            }
            Ok(Some(fixed)) => {
                self.rewrote = true;
                tracing::debug!("rewrote a client's :authority that h2 would refuse");
                write_block(&mut self.out, &block, &fixed);
            }
            Err(hpack::Malformed(why)) => {
                tracing::debug!(why, "a header block the authority scanner cannot follow; standing aside");
                self.out.extend_from_slice(&block.raw);
                self.off = true;
            }
        }
    }
}

/// A HEADERS payload's priority fields and block fragment, without padding.
fn split_headers(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut body = payload;
    if flags & PADDED != 0 {
        let (&pad, rest) = body.split_first()?;
        body = rest.get(..rest.len().checked_sub(pad as usize)?)?;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        priority = Some(body.get(..5)?.try_into().ok()?);
        body = &body[5..];
    }
    Some((priority, body))
}

/// A rewritten block as one HEADERS frame and as many CONTINUATION frames as it needs.
fn write_block(out: &mut Vec<u8>, block: &Block, fixed: &[u8]) {
    let prefix = block.priority.map_or(0, |_| 5);
    let first = fixed.len().min(MIN_MAX_FRAME - prefix);
    let mut flags = block.flags & (END_STREAM | PRIORITY);
    if first == fixed.len() {
        flags |= END_HEADERS;
    }
    frame_header(out, prefix + first, HEADERS, flags, block.stream);
    if let Some(p) = block.priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(&fixed[..first]);
    let mut rest = &fixed[first..];
    while !rest.is_empty() {
        let n = rest.len().min(MIN_MAX_FRAME);
        frame_header(out, n, CONTINUATION, if n == rest.len() { END_HEADERS } else { 0 }, block.stream);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: [u8; 4]) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        frame_header(&mut f, payload.len(), kind, flags, [0, 0, 0, stream]);
        f.extend_from_slice(payload);
        f
    }

    fn run(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut s = Scanner::default();
        for c in input.chunks(chunk) {
            s.feed(c);
        }
        s.finish();
        s.out[s.at..].to_vec()
    }

    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn authority_block(value: &[u8]) -> Vec<u8> {
        [&[0x83, 0x86, 0x41, value.len() as u8][..], value].concat()
    }

    #[test]
    fn only_a_bad_authority_changes_whatever_the_chunking() {
        let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        let data = frame(0x0, END_STREAM, 1, &[7; 40_000][..16_000]);
        let good = frame(HEADERS, END_HEADERS, 3, &authority_block(b"localhost"));
        let bad = frame(HEADERS, END_HEADERS | END_STREAM, 1, &authority_block(b"tmp%2Fz.sock"));
        let input = [&PREFACE[..], &settings, &bad, &good, &data, &bad].concat();
        let want_bad = frame(HEADERS, END_HEADERS | END_STREAM, 1, &authority_block(b"tmp-2Fz.sock"));
        let want = [&PREFACE[..], &settings, &want_bad, &good, &data, &want_bad].concat();
        for chunk in [1, 7, 9, 100, 1 << 20] {
            assert_eq!(run(&input, chunk), want, "chunk {chunk}");
        }
        // A client whose first block is fine is left alone after it.
        let input = [&PREFACE[..], &settings, &good, &data, &bad].concat();
        assert_eq!(run(&input, 64), input);
    }

    #[test]
    fn padding_priority_and_continuations_are_folded_into_one_frame() {
        let block = authority_block(b"/var/run/x.sock");
        let mut first = vec![2]; // pad length
        first.extend_from_slice(&[0, 0, 0, 0, 16]); // priority
        first.extend_from_slice(&block[..5]);
        first.extend_from_slice(&[0, 0]);
        let input = [
            &PREFACE[..],
            &frame(HEADERS, PADDED | PRIORITY, 1, &first),
            &frame(CONTINUATION, 0, 1, &block[5..9]),
            &frame(CONTINUATION, END_HEADERS, 1, &block[9..]),
        ]
        .concat();
        let fixed = [&[0, 0, 0, 0, 16][..], &authority_block(b"-var-run-x.sock")].concat();
        assert_eq!(run(&input, 5), [&PREFACE[..], &frame(HEADERS, PRIORITY | END_HEADERS, 1, &fixed)].concat());
    }

    #[test]
    fn what_it_cannot_follow_passes_through_unchanged() {
        // A DATA frame inside an unfinished block, then a bad authority it no longer touches.
        let open = frame(HEADERS, 0, 1, &authority_block(b"a%2F")[..2]);
        let data = frame(0x0, 0, 1, b"xyz");
        let later = frame(HEADERS, END_HEADERS, 3, &authority_block(b"a%2F"));
        let input = [&PREFACE[..], &open, &data, &later].concat();
        assert_eq!(run(&input, 3), input);
        // An index the table does not hold.
        let input = [&PREFACE[..], &frame(HEADERS, END_HEADERS, 1, &[0xc0]), &later].concat();
        assert_eq!(run(&input, 64), input);
        // A truncated connection.
        assert_eq!(run(&input[..30], 4), &input[..30]);
    }

    #[test]
    fn only_refused_authorities_are_rewritten() {
        assert_eq!(acceptable(b"localhost:50051"), None);
        assert_eq!(acceptable(b"zeta.sock"), None);
        assert_eq!(acceptable(b""), None);
        assert_eq!(acceptable(b"tmp%2Fzeta.sock").as_deref(), Some(&b"tmp-2Fzeta.sock"[..]));
        assert_eq!(acceptable(b"/a b/\xff").as_deref(), Some(&b"-a-b--"[..]));
    }
}
