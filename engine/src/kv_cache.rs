//! Per-sequence key/value cache. Each layer keeps one pre-allocated buffer for keys and one for
//! values, grown in blocks; a step writes its new rows with `slice_update`, which MLX performs in
//! place because the cache holds the only reference to the buffer. Sequences in a batch keep
//! their own caches, so joining and leaving a running batch never copies anyone else's state.

use mlx::{Array, Dtype, ops};

use crate::error::Result;

/// Growth unit, in tokens.
const BLOCK: usize = 256;

struct LayerCache {
    keys: Array,
    values: Array,
}

/// The keys and values of one sequence, for every layer.
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    /// Tokens stored.
    len: usize,
    /// Tokens the buffers can hold before they grow.
    capacity: usize,
    kv_heads: i32,
    head_dim: i32,
    dtype: Dtype,
}

impl KvCache {
    /// An empty cache for a model with these dimensions.
    pub fn new(num_layers: usize, kv_heads: usize, head_dim: usize, dtype: Dtype) -> KvCache {
        KvCache {
            layers: (0..num_layers).map(|_| None).collect(),
            len: 0,
            capacity: 0,
            kv_heads: kv_heads as i32,
            head_dim: head_dim as i32,
            dtype,
        }
    }

    /// Tokens stored (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes reserved by the buffers.
    pub fn reserved_bytes(&self) -> usize {
        self.layers.len() * 2 * self.capacity * (self.kv_heads * self.head_dim) as usize * self.dtype.size()
    }

    /// Stores `k`/`v` (`[1, kv_heads, n, head_dim]`) for `layer` at the current position and
    /// returns all keys and values so far, `[1, kv_heads, len + n, head_dim]`. The position only
    /// moves on [`KvCache::advance`], once every layer has been updated.
    pub fn update(&mut self, layer: usize, k: &Array, v: &Array) -> Result<(Array, Array)> {
        let n = k.dim(2) as usize;
        let end = self.len + n;
        if end > self.capacity {
            self.grow(end)?;
        }
        let entry = self.layers[layer].as_mut().expect("grow allocates every layer");
        let start = [0, 0, self.len as i32, 0];
        let stop = [1, self.kv_heads, end as i32, self.head_dim];
        entry.keys = ops::slice_update(&entry.keys, k, &start, &stop)?;
        entry.values = ops::slice_update(&entry.values, v, &start, &stop)?;
        let lo = [0, 0, 0, 0];
        Ok((ops::slice(&entry.keys, &lo, &stop)?, ops::slice(&entry.values, &lo, &stop)?))
    }

    /// Moves the position past the `n` tokens just written to every layer.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }

    fn grow(&mut self, needed: usize) -> Result<()> {
        let capacity = needed.div_ceil(BLOCK) * BLOCK;
        let extra = [1, self.kv_heads, (capacity - self.capacity) as i32, self.head_dim];
        let keep = [1, self.kv_heads, self.len as i32, self.head_dim];
        for entry in &mut self.layers {
            let zeros = Array::zeros(&extra, self.dtype)?;
            *entry = Some(match entry.take() {
                None => LayerCache { keys: zeros.clone(), values: zeros },
                Some(old) => {
                    let k = ops::slice(&old.keys, &[0, 0, 0, 0], &keep)?;
                    let v = ops::slice(&old.values, &[0, 0, 0, 0], &keep)?;
                    let pad = [1, self.kv_heads, (capacity - self.len) as i32, self.head_dim];
                    let z = Array::zeros(&pad, self.dtype)?;
                    LayerCache { keys: ops::concatenate(&[&k, &z], 2)?, values: ops::concatenate(&[&v, &z], 2)? }
                }
            });
        }
        self.capacity = capacity;
        Ok(())
    }

    /// A new cache holding the first `n` tokens of this one. It shares this cache's buffers until
    /// it is written to, then grows into buffers of its own (copy on write), so the source stays
    /// valid for other sequences with the same prefix.
    pub fn prefix(&self, n: usize) -> Result<KvCache> {
        let n = n.min(self.len);
        let stop = [1, self.kv_heads, n as i32, self.head_dim];
        let mut layers = Vec::with_capacity(self.layers.len());
        for entry in &self.layers {
            layers.push(match entry {
                Some(e) if n > 0 => Some(LayerCache {
                    keys: ops::slice(&e.keys, &[0, 0, 0, 0], &stop)?,
                    values: ops::slice(&e.values, &[0, 0, 0, 0], &stop)?,
                }),
                _ => None,
            });
        }
        let capacity = if n > 0 { n } else { 0 };
        Ok(KvCache { layers, len: n, capacity, kv_heads: self.kv_heads, head_dim: self.head_dim, dtype: self.dtype })
    }

    /// Every buffer, for evaluation.
    pub fn arrays(&self) -> Vec<&Array> {
        self.layers.iter().flatten().flat_map(|e| [&e.keys, &e.values]).collect()
    }
}
