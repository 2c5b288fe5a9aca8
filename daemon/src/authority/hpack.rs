//! Just enough HPACK (RFC 7541) to find `:authority` in a client's header blocks and replace
//! its value with one of the same length: a walker over the field representations that keeps
//! the decoder's dynamic table in step (which entries are `:authority`, and their sizes), and a
//! Huffman decoder. Nothing is re-encoded but the replaced values, written as plain literals;
//! since their decoded length is unchanged, h2's table and the client's stay the same size.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::OnceLock;

/// The header block could not be walked; h2 will refuse it too, so the caller stops rewriting.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// The decoder side of one connection's dynamic table, as far as a rewrite needs it.
#[derive(Debug)]
pub struct Table {
    /// Newest first.
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
    /// The ceiling the server advertised (SETTINGS_HEADER_TABLE_SIZE; h2 keeps the default).
    limit: usize,
}

/// What a dynamic-table entry needs to be known by: its name's kind and length, and its size.
#[derive(Debug)]
struct Entry {
    authority: bool,
    name_len: usize,
    size: usize,
}

impl Default for Table {
    fn default() -> Self {
        Table { entries: VecDeque::new(), size: 0, max: 4096, limit: 4096 }
    }
}

/// Bytes of the name of each static-table entry (RFC 7541 Appendix A), index 1 first; only the
/// lengths matter here (for entry sizes), and entry 1 is `:authority`.
const STATIC_NAME_LEN: [u8; 61] = [
    10, 7, 7, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7, 7, 14, 15, 15, 13, 6, 27, 3, 5, 13, 13, 19, 16, 16, 14, 16, 13, 12, 6, 4,
    4, 6, 7, 4, 4, 8, 17, 13, 8, 19, 13, 4, 8, 12, 18, 19, 5, 7, 7, 11, 6, 10, 25, 17, 10, 4, 3, 16,
];

impl Table {
    /// Walks one complete header block; `Some(block)` when an `:authority` value had to change.
    pub fn rewrite(
        &mut self,
        block: &[u8],
        fix: impl Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, Malformed> {
        let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
        let mut i = 0;
        while i < block.len() {
            let b = block[i];
            if b & 0x80 != 0 {
                let (index, n) = integer(&block[i..], 7)?;
                self.name(index)?;
                i += n;
            } else if b & 0xe0 == 0x20 {
                let (size, n) = integer(&block[i..], 5)?;
                if size > self.limit {
                    return Err(Malformed("table size update above the advertised limit"));
                }
                self.max = size;
                self.evict(0);
                i += n;
            } else {
                // 01: with incremental indexing; 0000 / 0001: without, never indexed.
                let indexed = b & 0xc0 == 0x40;
                let (index, n) = integer(&block[i..], if indexed { 6 } else { 4 })?;
                i += n;
                let (authority, name_len) = if index == 0 {
                    let (name, n) = string(&block[i..])?;
                    i += n;
                    (name == b":authority", name.len())
                } else {
                    self.name(index)?
                };
                let (value, n) = string(&block[i..])?;
                if authority && let Some(fixed) = fix(&value) {
                    debug_assert_eq!(fixed.len(), value.len());
                    let mut literal = Vec::with_capacity(fixed.len() + 5);
                    put_integer(&mut literal, fixed.len(), 7, 0x00);
                    literal.extend_from_slice(&fixed);
                    edits.push((i..i + n, literal));
                }
                i += n;
                if indexed {
                    self.insert(Entry { authority, name_len, size: name_len + value.len() + 32 });
                }
            }
        }
        if edits.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(block.len() + 16);
        let mut at = 0;
        for (range, bytes) in edits {
            out.extend_from_slice(&block[at..range.start]);
            out.extend_from_slice(&bytes);
            at = range.end;
        }
        out.extend_from_slice(&block[at..]);
        Ok(Some(out))
    }

    /// Whether the entry at `index` is `:authority`, and the length of its name.
    fn name(&self, index: usize) -> Result<(bool, usize), Malformed> {
        match index {
            0 => Err(Malformed("index 0")),
            1..=61 => Ok((index == 1, STATIC_NAME_LEN[index - 1] as usize)),
            _ => match self.entries.get(index - 62) {
                Some(e) => Ok((e.authority, e.name_len)),
                None => Err(Malformed("index past the dynamic table")),
            },
        }
    }

    fn insert(&mut self, entry: Entry) {
        self.evict(entry.size);
        if entry.size <= self.max {
            self.size += entry.size;
            self.entries.push_front(entry);
        }
    }

    /// Drops the oldest entries until `room` more bytes fit (all of them when they cannot).
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size,
                None => break,
            }
        }
    }
}

/// An RFC 7541 §5.1 integer with an `prefix`-bit prefix: its value and the bytes it took.
fn integer(bytes: &[u8], prefix: u32) -> Result<(usize, usize), Malformed> {
    let mask = (1usize << prefix) - 1;
    let first = *bytes.first().ok_or(Malformed("truncated integer"))? as usize & mask;
    if first < mask {
        return Ok((first, 1));
    }
    let mut value = mask;
    for (k, &b) in bytes.iter().enumerate().skip(1) {
        // Anything past 2^28 is no length or index a sane client sends.
        if k > 4 {
            return Err(Malformed("integer too large"));
        }
        value += ((b & 0x7f) as usize) << (7 * (k - 1));
        if b & 0x80 == 0 {
            return Ok((value, k + 1));
        }
    }
    Err(Malformed("truncated integer"))
}

fn put_integer(out: &mut Vec<u8>, mut value: usize, prefix: u32, high: u8) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.push(high | value as u8);
        return;
    }
    out.push(high | mask as u8);
    value -= mask;
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

/// An RFC 7541 §5.2 string literal, decoded: its octets and the bytes it took.
fn string(bytes: &[u8]) -> Result<(Vec<u8>, usize), Malformed> {
    let huffman = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let (len, n) = integer(bytes, 7)?;
    let raw = bytes.get(n..n + len).ok_or(Malformed("truncated string"))?;
    let value = if huffman { huffman_decode(raw)? } else { raw.to_vec() };
    Ok((value, n + len))
}

/// The code length of each symbol of RFC 7541 Appendix B (byte 0 first, EOS last). The code is
/// canonical, so the lengths alone give every code: sorted by (length, symbol), each code is
/// the previous one plus one, shifted left by the growth in length.
const CODE_LEN: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];

const EOS: u16 = 256;

/// (length, code) → symbol, built once from [`CODE_LEN`].
fn codes() -> &'static HashMap<(u8, u32), u16> {
    static CODES: OnceLock<HashMap<(u8, u32), u16>> = OnceLock::new();
    CODES.get_or_init(|| {
        let mut order: Vec<u16> = (0..257).collect();
        order.sort_by_key(|&s| (CODE_LEN[s as usize], s));
        let mut map = HashMap::with_capacity(257);
        let (mut code, mut len) = (0u32, CODE_LEN[order[0] as usize]);
        for (k, &s) in order.iter().enumerate() {
            let l = CODE_LEN[s as usize];
            if k > 0 {
                code = (code + 1) << (l - len);
            }
            len = l;
            map.insert((l, code), s);
        }
        map
    })
}

/// Decodes a Huffman-coded string; the padding must be at most 7 bits of the EOS prefix (all ones).
fn huffman_decode(bytes: &[u8]) -> Result<Vec<u8>, Malformed> {
    let codes = codes();
    let mut out = Vec::with_capacity(bytes.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0u8);
    for &byte in bytes {
        for bit in (0..8).rev() {
            code = (code << 1) | ((byte >> bit) & 1) as u32;
            len += 1;
            match codes.get(&(len, code)) {
                Some(&EOS) => return Err(Malformed("EOS inside a Huffman string")),
                Some(&s) => {
                    out.push(s as u8);
                    (code, len) = (0, 0);
                }
                None if len >= 30 => return Err(Malformed("invalid Huffman code")),
                None => {}
            }
        }
    }
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(Malformed("invalid Huffman padding"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn huffman_encode(s: &[u8]) -> Vec<u8> {
        let mut by_symbol = [(0u32, 0u8); 257];
        for (&(len, code), &sym) in codes() {
            by_symbol[sym as usize] = (code, len);
        }
        let (mut acc, mut bits, mut out) = (0u64, 0u8, Vec::new());
        for &b in s {
            let (code, len) = by_symbol[b as usize];
            acc = (acc << len) | code as u64;
            bits += len;
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if bits > 0 {
            out.push(((acc << (8 - bits)) as u8) | ((1u8 << (8 - bits)) - 1));
        }
        out
    }

    fn dashes(v: &[u8]) -> Option<Vec<u8>> {
        v.contains(&b'%').then(|| v.iter().map(|&b| if b == b'%' { b'-' } else { b }).collect())
    }

    #[test]
    fn huffman_decodes_the_rfc_examples() {
        // RFC 7541 C.4.1 to C.4.3.
        assert_eq!(huffman_decode(&hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")).unwrap(), b"www.example.com");
        assert_eq!(huffman_decode(&hex("a8eb 1064 9cbf")).unwrap(), b"no-cache");
        assert_eq!(huffman_encode(b"www.example.com"), hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"));
        let every: Vec<u8> = (0..=255).collect();
        assert_eq!(huffman_decode(&huffman_encode(&every)).unwrap(), every);
        assert_eq!(huffman_decode(&hex("25a8 49e9 5ba9 7d7f")).unwrap(), b"custom-key");
        assert_eq!(huffman_decode(&hex("25a8 49e9 5bb8 e8b4 bf")).unwrap(), b"custom-value");
        // Padding that is not all ones, and padding longer than 7 bits.
        assert!(huffman_decode(&hex("a8eb 1064 9cbe")).is_err());
        assert!(huffman_decode(&hex("a8eb 1064 9cbf ff")).is_err());
    }

    #[test]
    fn integers_follow_the_rfc_examples() {
        assert_eq!(integer(&[0b0000_1010], 5), Ok((10, 1)));
        assert_eq!(integer(&[0b0001_1111, 0b1001_1010, 0b0000_1010], 5), Ok((1337, 3)));
        let mut v = Vec::new();
        put_integer(&mut v, 1337, 5, 0);
        assert_eq!(v, [31, 154, 10]);
        assert!(integer(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 7).is_err());
    }

    #[test]
    fn the_rfc_request_sequence_walks_and_keeps_the_table_in_step() {
        // RFC 7541 C.4: three requests, Huffman-coded, sharing a dynamic table.
        let mut t = Table::default();
        assert_eq!(t.rewrite(&hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"), dashes), Ok(None));
        assert_eq!(t.size, 57);
        assert_eq!(t.rewrite(&hex("8286 84be 5886 a8eb 1064 9cbf"), dashes), Ok(None));
        assert_eq!(t.size, 110);
        let third = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
        assert_eq!(t.rewrite(&third, dashes), Ok(None));
        assert_eq!(t.size, 164);
        assert_eq!(t.entries.len(), 3);
        assert!(t.entries[2].authority && !t.entries[1].authority);
    }

    #[test]
    fn a_bad_authority_is_replaced_by_a_plain_literal_of_the_same_length() {
        let mut t = Table::default();
        // `:authority: a%2Fb` with incremental indexing (indexed name 1), then a reference to it.
        let block = [&[0x41, 0x05][..], b"a%2Fb", &[0xbe]].concat();
        let out = t.rewrite(&block, dashes).unwrap().unwrap();
        assert_eq!(out, [&[0x41, 0x05][..], b"a-2Fb", &[0xbe]].concat());
        assert_eq!(t.size, 10 + 5 + 32);
        // The same value Huffman-coded under a literal name, never indexed.
        let mut block = vec![0x10, 0x0a];
        block.extend_from_slice(b":authority");
        let coded = huffman_encode(b"a%2F");
        put_integer(&mut block, coded.len(), 7, 0x80);
        block.extend_from_slice(&coded);
        let out = t.rewrite(&block, dashes).unwrap().unwrap();
        assert_eq!(out, [&[0x10, 0x0a][..], b":authority", &[0x04], b"a-2F"].concat());
        // A later request that indexes the rewritten entry needs nothing.
        assert_eq!(t.rewrite(&[0x82, 0xbe], dashes), Ok(None));
    }

    #[test]
    fn eviction_and_size_updates_track_the_decoder() {
        let mut t = Table::default();
        let mut block = vec![0x20 | 31, 64 - 31]; // size update to 64: one small entry fits
        block.extend_from_slice(&[0x41, 0x05]);
        block.extend_from_slice(b"a%2Fb");
        assert!(t.rewrite(&block, dashes).unwrap().is_some());
        assert_eq!(t.entries.len(), 1);
        // A second entry evicts the first.
        let block = [&[0x40 | 38, 0x03][..], b"xyz"].concat();
        t.rewrite(&block, dashes).unwrap();
        assert_eq!((t.entries.len(), t.entries[0].authority), (1, false));
        assert_eq!(t.rewrite(&[0xbf], dashes), Err(Malformed("index past the dynamic table")));
        assert!(t.rewrite(&[0x3f, 0xe2, 0x1f], dashes).is_err()); // 4097 > the limit
    }
}
