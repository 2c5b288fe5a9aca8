//! Safetensors files, through MLX's own loader (GGUF is `gguf.rs`).

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
