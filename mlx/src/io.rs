//! Weight files: safetensors and GGUF through MLX's own loaders, which map the file and read each
//! tensor lazily on first evaluation.

use std::collections::HashMap;
use std::path::Path;

use cxx::UniquePtr;

use crate::array::{Array, ArrayList};
use crate::ffi::ffi;
use crate::{Error, Result, err};

fn path_str<'a>(path: &'a Path, op: &'static str) -> Result<&'a str> {
    path.to_str().ok_or_else(|| Error { op, message: format!("path {} is not valid UTF-8", path.display()) })
}

/// The tensors of one safetensors file. Tensors are moved out with [`Safetensors::take`].
pub struct Safetensors {
    inner: UniquePtr<ffi::Safetensors>,
}

impl Safetensors {
    /// Opens a file (header parsed now, data read lazily).
    pub fn load(path: &Path) -> Result<Safetensors> {
        let inner = ffi::load_safetensors(path_str(path, "load_safetensors")?).map_err(err("load_safetensors"))?;
        Ok(Safetensors { inner })
    }

    /// Names of the tensors not yet taken.
    pub fn keys(&self) -> Vec<String> {
        ffi::safetensors_keys(&self.inner)
    }

    /// Removes and returns one tensor.
    pub fn take(&mut self, key: &str) -> Result<Array> {
        Array::wrap("safetensors", ffi::safetensors_take(self.inner.pin_mut(), key))
    }

    /// The string metadata of the header.
    pub fn metadata(&self) -> HashMap<String, String> {
        let flat = ffi::safetensors_metadata(&self.inner);
        flat.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect()
    }
}

/// Writes named arrays to a safetensors file.
pub fn save_safetensors(path: &Path, tensors: &[(String, Array)]) -> Result<()> {
    let names: Vec<String> = tensors.iter().map(|(n, _)| n.clone()).collect();
    let list = ArrayList::of(tensors.iter().map(|(_, a)| a));
    ffi::save_safetensors(path_str(path, "save_safetensors")?, &names, &list.inner).map_err(err("save_safetensors"))
}

/// One metadata value of a GGUF file.
#[derive(Debug)]
pub enum GgufMeta {
    /// A number, boolean or numeric array.
    Array(Array),
    /// A string (raw bytes; GGUF does not promise UTF-8).
    String(Vec<u8>),
    /// A list of strings, e.g. the vocabulary.
    Strings(Vec<Vec<u8>>),
}

/// The tensors and metadata of one GGUF file. Q4_0, Q4_1 and Q8_0 tensors appear as MLX affine
/// quantized triples (`name.weight` packed `u32`, `name.scales`, `name.biases`) with group size 32.
pub struct Gguf {
    inner: UniquePtr<ffi::Gguf>,
}

impl Gguf {
    /// Opens a file; MLX checks that every tensor lies inside it.
    pub fn load(path: &Path) -> Result<Gguf> {
        let inner = ffi::load_gguf(path_str(path, "load_gguf")?).map_err(err("load_gguf"))?;
        Ok(Gguf { inner })
    }

    /// Names of the tensors not yet taken.
    pub fn tensor_keys(&self) -> Vec<String> {
        ffi::gguf_tensor_keys(&self.inner)
    }

    /// Removes and returns one tensor.
    pub fn take(&mut self, key: &str) -> Result<Array> {
        Array::wrap("gguf", ffi::gguf_take(self.inner.pin_mut(), key))
    }

    /// Names of all metadata keys.
    pub fn meta_keys(&self) -> Vec<String> {
        ffi::gguf_meta_keys(&self.inner)
    }

    /// One metadata value, or `None` when the key is absent.
    pub fn meta(&self, key: &str) -> Result<Option<GgufMeta>> {
        Ok(match ffi::gguf_meta_kind(&self.inner, key) {
            1 => Some(GgufMeta::Array(Array::wrap("gguf_meta", ffi::gguf_meta_array(&self.inner, key))?)),
            2 => {
                let s = ffi::gguf_meta_string(&self.inner, key).map_err(err("gguf_meta"))?;
                Some(GgufMeta::String(s.as_bytes().to_vec()))
            }
            3 => {
                let v = ffi::gguf_meta_strings(&self.inner, key).map_err(err("gguf_meta"))?;
                Some(GgufMeta::Strings(v.iter().map(|s| s.as_bytes().to_vec()).collect()))
            }
            _ => None,
        })
    }
}
