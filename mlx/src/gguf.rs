//! GGUF files. The header (metadata and tensor table) is parsed here, and each tensor is read
//! from the file when it is taken and handed to MLX in the layout MLX's kernels take: Q4_0, Q4_1
//! and Q8_0 as affine triples (`name.weight` packed `u32`, `name.scales`, `name.biases`, groups of
//! 32) and MXFP4 as MLX's `mxfp4` pair (`name.weight`, `name.scales` as E8M0 bytes).
//!
//! MLX's own GGUF loader cannot read MXFP4, the type every gpt-oss GGUF stores its experts in, so
//! it no longer reads the files. It still reads the tensors of a file holding types only it
//! dequantizes (the K-quants, to float16); such a file cannot also hold MXFP4.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cxx::UniquePtr;

use crate::array::{Array, Dtype};
use crate::ffi::ffi;
use crate::{Error, Result, err, ops};

/// One metadata value of a GGUF file.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufMeta {
    /// A number or boolean (1 for true).
    Number(f64),
    /// An array of numbers or booleans, e.g. the vocabulary's scores.
    Numbers(Vec<f64>),
    /// A string (raw bytes; GGUF does not promise UTF-8).
    String(Vec<u8>),
    /// A list of strings, e.g. the vocabulary.
    Strings(Vec<Vec<u8>>),
}

/// ggml's tensor types that are read here.
mod ty {
    pub const F32: u32 = 0;
    pub const F16: u32 = 1;
    pub const Q4_0: u32 = 2;
    pub const Q4_1: u32 = 3;
    pub const Q8_0: u32 = 8;
    pub const I8: u32 = 24;
    pub const I16: u32 = 25;
    pub const I32: u32 = 26;
    pub const BF16: u32 = 30;
    pub const MXFP4: u32 = 39;
}

/// Bytes per block of 32 weights for the block types read here.
fn block_bytes(t: u32) -> Option<u64> {
    match t {
        ty::Q4_0 => Some(18),
        ty::Q4_1 => Some(20),
        ty::Q8_0 => Some(34),
        ty::MXFP4 => Some(17),
        _ => None,
    }
}

fn plain_dtype(t: u32) -> Option<Dtype> {
    match t {
        ty::F32 => Some(Dtype::F32),
        ty::F16 => Some(Dtype::F16),
        ty::BF16 => Some(Dtype::BF16),
        ty::I8 => Some(Dtype::I8),
        ty::I16 => Some(Dtype::I16),
        ty::I32 => Some(Dtype::I32),
        _ => None,
    }
}

/// One entry of the tensor table.
#[derive(Clone, Debug)]
struct TensorInfo {
    name: String,
    /// MLX order (ggml's reversed).
    shape: Vec<i32>,
    kind: u32,
    /// Absolute offset in the file.
    offset: u64,
    bytes: u64,
}

impl TensorInfo {
    fn stem(&self) -> &str {
        self.name.strip_suffix(".weight").unwrap_or(&self.name)
    }

    /// The names this tensor appears under once taken.
    fn parts(&self) -> Vec<String> {
        match self.kind {
            ty::Q4_0 | ty::Q4_1 | ty::Q8_0 => {
                vec![
                    format!("{}.weight", self.stem()),
                    format!("{}.scales", self.stem()),
                    format!("{}.biases", self.stem()),
                ]
            }
            ty::MXFP4 => vec![format!("{}.weight", self.stem()), format!("{}.scales", self.stem())],
            _ => vec![self.name.clone()],
        }
    }
}

/// The tensors and metadata of one GGUF file. Tensors are moved out with [`Gguf::take`].
pub struct Gguf {
    path: PathBuf,
    file: File,
    meta: HashMap<String, GgufMeta>,
    tensors: Vec<TensorInfo>,
    /// Part name → index into `tensors`.
    parts: HashMap<String, usize>,
    /// Parts already converted, waiting for their own `take`.
    pending: HashMap<String, Array>,
    /// MLX's loader, for files with types only it reads.
    mlx: Option<UniquePtr<ffi::Gguf>>,
}

fn fail(path: &Path, message: impl std::fmt::Display) -> Error {
    Error { op: "load_gguf", message: format!("{}: {message}", path.display()) }
}

/// The header reader: every length is checked against what is left of the file, so a corrupt
/// count is an error, not an allocation of petabytes.
struct Header<R> {
    r: R,
    left: u64,
}

impl<R: Read> Header<R> {
    fn bytes(&mut self, n: u64) -> std::io::Result<Vec<u8>> {
        if n > self.left {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "a length runs past the end of the file",
            ));
        }
        let mut b = vec![0; n as usize];
        self.r.read_exact(&mut b)?;
        self.left -= n;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        Ok(self.bytes(N as u64)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self) -> std::io::Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> std::io::Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> std::io::Result<Vec<u8>> {
        let n = self.u64()?;
        self.bytes(n)
    }

    /// A scalar of value type `t` as f64.
    fn number(&mut self, t: u32) -> std::io::Result<Option<f64>> {
        Ok(Some(match t {
            0 => self.array::<1>()?[0] as f64,
            1 => self.array::<1>()?[0] as i8 as f64,
            2 => u16::from_le_bytes(self.array()?) as f64,
            3 => i16::from_le_bytes(self.array()?) as f64,
            4 => self.u32()? as f64,
            5 => i32::from_le_bytes(self.array()?) as f64,
            6 => f32::from_le_bytes(self.array()?) as f64,
            7 => (self.array::<1>()?[0] != 0) as u8 as f64,
            10 => self.u64()? as f64,
            11 => i64::from_le_bytes(self.array()?) as f64,
            12 => f64::from_le_bytes(self.array()?),
            _ => return Ok(None),
        }))
    }

    fn value(&mut self, t: u32) -> std::io::Result<GgufMeta> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        match t {
            8 => Ok(GgufMeta::String(self.string()?)),
            9 => {
                let (inner, n) = (self.u32()?, self.u64()?);
                if n > self.left {
                    return Err(bad(format!("an array of {n} values is longer than the file")));
                }
                if inner == 8 {
                    return (0..n).map(|_| self.string()).collect::<std::io::Result<_>>().map(GgufMeta::Strings);
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.number(inner)?.ok_or_else(|| bad(format!("arrays of value type {inner}")))?);
                }
                Ok(GgufMeta::Numbers(v))
            }
            _ => self.number(t)?.map(GgufMeta::Number).ok_or_else(|| bad(format!("value type {t}"))),
        }
    }
}

impl Gguf {
    /// Opens a file: its metadata and tensor table are read now, tensors when taken. Every tensor
    /// must lie inside the file.
    pub fn load(path: &Path) -> Result<Gguf> {
        let file = File::open(path).map_err(|e| fail(path, e))?;
        let len = file.metadata().map_err(|e| fail(path, e))?.len();
        let mut h = Header { r: BufReader::new(&file), left: len };
        let io = |e: std::io::Error| fail(path, format!("bad header: {e}"));
        if &h.array::<4>().map_err(io)? != b"GGUF" {
            return Err(fail(path, "not a GGUF file (no GGUF magic)"));
        }
        let version = h.u32().map_err(io)?;
        if !(2..=3).contains(&version) {
            return Err(fail(path, format!("GGUF version {version} is not supported (2 and 3 are)")));
        }
        let (n_tensors, n_kv) = (h.u64().map_err(io)?, h.u64().map_err(io)?);
        if n_tensors.max(n_kv) > h.left {
            return Err(fail(
                path,
                format!("bad header: {n_tensors} tensors and {n_kv} keys in a file of {len} bytes"),
            ));
        }
        let mut meta = HashMap::new();
        for _ in 0..n_kv {
            let key = String::from_utf8_lossy(&h.string().map_err(io)?).into_owned();
            let t = h.u32().map_err(io)?;
            let v = h.value(t).map_err(io)?;
            meta.insert(key, v);
        }
        let mut tensors = Vec::new();
        for _ in 0..n_tensors {
            let name = String::from_utf8_lossy(&h.string().map_err(io)?).into_owned();
            let nd = h.u32().map_err(io)?;
            if nd > 4 {
                return Err(fail(path, format!("tensor '{name}' has {nd} dimensions (at most 4)")));
            }
            let dims = (0..nd).map(|_| h.u64()).collect::<std::io::Result<Vec<u64>>>().map_err(io)?;
            let (kind, offset) = (h.u32().map_err(io)?, h.u64().map_err(io)?);
            if dims.iter().any(|&d| d > i32::MAX as u64) {
                return Err(fail(path, format!("tensor '{name}' has a dimension past 2^31: {dims:?}")));
            }
            let count = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).unwrap_or(u64::MAX);
            let bytes = match (block_bytes(kind), plain_dtype(kind)) {
                (Some(b), _) => {
                    if dims.first().is_none_or(|d| d % 32 != 0) {
                        return Err(fail(path, format!("tensor '{name}' rows of {dims:?} are not whole blocks of 32")));
                    }
                    count / 32 * b
                }
                (None, Some(d)) => count.saturating_mul(d.size() as u64),
                (None, None) => 0,
            };
            let shape = dims.iter().rev().map(|&d| d as i32).collect();
            tensors.push(TensorInfo { name, shape, kind, offset, bytes });
        }
        let align = match meta.get("general.alignment") {
            Some(GgufMeta::Number(a)) if *a >= 1.0 => *a as u64,
            _ => 32,
        };
        let header_end = h.r.stream_position().map_err(|e| fail(path, e))?;
        let data = header_end.div_ceil(align) * align;
        for t in &mut tensors {
            t.offset = data.saturating_add(t.offset);
            if t.offset.saturating_add(t.bytes) > len {
                return Err(fail(path, format!("tensor '{}' lies past the end of the file", t.name)));
            }
        }
        let foreign: Vec<&TensorInfo> =
            tensors.iter().filter(|t| block_bytes(t.kind).is_none() && plain_dtype(t.kind).is_none()).collect();
        let mlx = match (foreign.first(), tensors.iter().find(|t| t.kind == ty::MXFP4)) {
            (None, _) => None,
            (Some(f), Some(m)) => {
                return Err(fail(
                    path,
                    format!(
                        "tensor '{}' is of GGUF type {}, which only MLX's loader reads, and tensor '{}' is MXFP4, \
                         which it cannot read; requantize the file to Q8_0/Q4_0 or float",
                        f.name, f.kind, m.name
                    ),
                ));
            }
            (Some(_), None) => {
                let p = path.to_str().ok_or_else(|| fail(path, "path is not valid UTF-8"))?;
                Some(ffi::load_gguf(p).map_err(err("load_gguf"))?)
            }
        };
        let parts = if mlx.is_some() {
            HashMap::new()
        } else {
            tensors.iter().enumerate().flat_map(|(i, t)| t.parts().into_iter().map(move |p| (p, i))).collect()
        };
        Ok(Gguf { path: path.into(), file, meta, tensors, parts, pending: HashMap::new(), mlx })
    }

    /// Names of the tensors not yet taken (quantized ones under their MLX part names).
    pub fn tensor_keys(&self) -> Vec<String> {
        match &self.mlx {
            Some(g) => ffi::gguf_tensor_keys(g),
            None => {
                let mut keys: Vec<String> = self.parts.keys().chain(self.pending.keys()).cloned().collect();
                keys.sort();
                keys
            }
        }
    }

    /// Removes and returns one tensor.
    pub fn take(&mut self, key: &str) -> Result<Array> {
        if let Some(g) = self.mlx.as_mut() {
            return Array::wrap("gguf", ffi::gguf_take(g.pin_mut(), key));
        }
        if let Some(a) = self.pending.remove(key) {
            return Ok(a);
        }
        let i = self
            .parts
            .get(key)
            .copied()
            .ok_or_else(|| Error { op: "gguf", message: format!("no tensor named {key}") })?;
        let t = self.tensors[i].clone();
        let names = t.parts();
        for n in &names {
            self.parts.remove(n);
        }
        let arrays = self.read(&t)?;
        let mut out = None;
        for (n, a) in names.into_iter().zip(arrays) {
            if n == key {
                out = Some(a);
            } else {
                self.pending.insert(n, a);
            }
        }
        Ok(out.expect("key is one of the tensor's parts"))
    }

    /// Names of all metadata keys.
    pub fn meta_keys(&self) -> Vec<String> {
        self.meta.keys().cloned().collect()
    }

    /// One metadata value, or `None` when the key is absent.
    pub fn meta(&self, key: &str) -> Option<&GgufMeta> {
        self.meta.get(key)
    }

    /// A number (or a one-element array of them: MLX's writer stores scalars so).
    pub fn number(&self, key: &str) -> Option<f64> {
        match self.meta.get(key)? {
            GgufMeta::Number(x) => Some(*x),
            GgufMeta::Numbers(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        }
    }

    /// An array of numbers.
    pub fn numbers(&self, key: &str) -> Option<&[f64]> {
        match self.meta.get(key)? {
            GgufMeta::Numbers(v) => Some(v),
            GgufMeta::Number(x) => Some(std::slice::from_ref(x)),
            _ => None,
        }
    }

    /// A string, invalid UTF-8 replaced.
    pub fn string(&self, key: &str) -> Option<String> {
        match self.meta.get(key)? {
            GgufMeta::String(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }

    /// A list of strings, invalid UTF-8 replaced.
    pub fn strings(&self, key: &str) -> Option<Vec<String>> {
        match self.meta.get(key)? {
            GgufMeta::Strings(v) => Some(v.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect()),
            _ => None,
        }
    }

    /// Reads one tensor and converts it to its MLX parts, in [`TensorInfo::parts`] order.
    fn read(&self, t: &TensorInfo) -> Result<Vec<Array>> {
        let mut raw = vec![0u8; t.bytes as usize];
        self.file
            .read_exact_at(&mut raw, t.offset)
            .map_err(|e| fail(&self.path, format!("reading '{}': {e}", t.name)))?;
        if let Some(d) = plain_dtype(t.kind) {
            return Ok(vec![Array::wrap("gguf", ffi::from_bytes(&raw, &t.shape, d as u8))?]);
        }
        let block = block_bytes(t.kind).expect("a block type") as usize;
        let blocks = raw.len() / block;
        // The scale (f16, or an E8M0 byte for MXFP4) and, for Q4_1, the minimum lead each block.
        let head = match t.kind {
            ty::MXFP4 => 1,
            ty::Q4_1 => 4,
            _ => 2,
        };
        let quant_bytes = block - head;
        let mut weights = Vec::with_capacity(blocks * quant_bytes);
        let mut scales = Vec::with_capacity(blocks * 2);
        let mut mins = Vec::new();
        for b in raw.chunks_exact(block) {
            let (h, q) = b.split_at(head);
            match t.kind {
                ty::MXFP4 => scales.push(h[0]),
                _ => scales.extend_from_slice(&h[..2]),
            }
            if t.kind == ty::Q4_1 {
                mins.extend_from_slice(&h[2..4]);
            }
            if t.kind == ty::Q8_0 {
                // int8 → MLX's unsigned codes, the offset moving into the bias.
                weights.extend(q.iter().map(|&x| x ^ 0x80));
            } else {
                weights.extend_from_slice(&mlx_nibbles(q.try_into().expect("16 bytes of nibbles")));
            }
        }
        let mut wshape = t.shape.clone();
        let mut sshape = t.shape.clone();
        let last = wshape.len() - 1;
        wshape[last] = t.shape[last] * if t.kind == ty::Q8_0 { 8 } else { 4 } / 32;
        sshape[last] = t.shape[last] / 32;
        let w = Array::wrap("gguf", ffi::from_bytes(&weights, &wshape, Dtype::U32 as u8))?;
        if t.kind == ty::MXFP4 {
            return Ok(vec![w, Array::wrap("gguf", ffi::from_bytes(&scales, &sshape, Dtype::U8 as u8))?]);
        }
        let s = Array::wrap("gguf", ffi::from_bytes(&scales, &sshape, Dtype::F16 as u8))?;
        let biases = match t.kind {
            ty::Q4_1 => Array::wrap("gguf", ffi::from_bytes(&mins, &sshape, Dtype::F16 as u8))?,
            // Signed codes q·s become unsigned (q + 2^(bits-1))·s − 2^(bits-1)·s.
            ty::Q4_0 => ops::multiply(&s, &Array::full(&[], -8.0, Dtype::F16)?)?,
            _ => ops::multiply(&s, &Array::full(&[], -128.0, Dtype::F16)?)?,
        };
        Ok(vec![w, s, biases])
    }
}

/// ggml packs a block's 32 four-bit codes as element j in the low nibble of byte j and element
/// j + 16 in its high nibble; MLX packs them in order, two per byte, low nibble first.
fn mlx_nibbles(q: &[u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for m in 0..8 {
        out[m] = (q[2 * m] & 0x0f) | (q[2 * m + 1] & 0x0f) << 4;
        out[8 + m] = (q[2 * m] >> 4) | (q[2 * m + 1] >> 4) << 4;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::mlx_nibbles;

    #[test]
    fn nibbles_follow_mlx_order() {
        // Element j of the block: ggml puts j < 16 in the low nibble of byte j, j ≥ 16 in the
        // high nibble of byte j - 16.
        let codes: Vec<u8> = (0..32).map(|j| (j * 7 % 16) as u8).collect();
        let mut q = [0u8; 16];
        for j in 0..16 {
            q[j] = codes[j] | codes[j + 16] << 4;
        }
        let out = mlx_nibbles(&q);
        for (i, &c) in codes.iter().enumerate() {
            assert_eq!((out[i / 2] >> (4 * (i % 2))) & 0x0f, c, "element {i}");
        }
    }
}
