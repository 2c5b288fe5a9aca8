//! The KV cache of one model: one pool of token slots per layer, shared by every sequence.
//!
//! Each layer keeps a keys buffer and a values buffer `[capacity, kv_heads, head_dim]`, or, for the
//! CPU's fused attention ([`KvPool::joined`]), one buffer `[capacity, 2, kv_heads, head_dim]` that
//! holds a slot's keys and then its values, so that one node writes a step's rows into it in place
//! (a node has one buffer it can take over: two would cost a node each). A sequence
//! owns a list of slots, one per token it has run, in order; a step writes all of its new tokens
//! with one `scatter` per buffer (in place: the pool holds the only reference to the buffer) and
//! attention gathers each row's slots. Because a slot is written once and never changes after,
//! sequences with a common prefix simply hold the same slots: the prefix cache and requests in
//! flight share them through reference counts, with no copy (see `prefix_cache.rs`).
//!
//! Slot 0 is scratch: padding rows write there and padded attention columns read it, so every
//! value it holds is a finite number some padding row computed, and it is never handed out.
//!
//! A model with sliding-window layers (Gemma 3, gpt-oss) gets a split pool ([`KvPool::split`]):
//! those layers keep their buffers in a second pool with slots of its own, of which a sequence
//! holds only its most recent tokens' (the scheduler gives older ones back), so that part of the
//! cache is bounded by the window rather than the context. Rather than a ring per sequence,
//! which could not be shared, the local slots are counted and shared like the others: prefix
//! sharing and the prefix cache work the same way, as long as the window they need is held.

use mlx::{Array, Dtype, ops};

use crate::error::{EngineError, Result};

/// Pools grow in multiples of this many slots.
const GRAIN: usize = 256;

/// Keys and values of every sequence of one model.
pub struct KvPool {
    layers: usize,
    /// Per layer; empty until the first [`KvPool::grow`]. A joined pool keeps each layer's one
    /// buffer in `keys`, and `values` stays empty.
    keys: Vec<Array>,
    values: Vec<Array>,
    /// Keys and values in one buffer per layer (see [`KvPool::joined`]).
    joint: bool,
    /// References per slot (sequences and prefix-cache entries holding it).
    refs: Vec<u32>,
    /// Unreferenced slots; the lowest ones are handed out first.
    free: Vec<u32>,
    /// Most slots the pool may grow to.
    limit: usize,
    kv_heads: i32,
    head_dim: i32,
    dtype: Dtype,
    /// The sliding-window layers' own pool, when they are kept apart (see [`KvPool::split`]).
    local: Option<Box<KvPool>>,
    /// Per model layer: whether it is a sliding-window layer (empty: no split).
    sliding: Vec<bool>,
    /// Per model layer: its buffer in its own pool (empty: the layer number itself).
    index: Vec<usize>,
    /// The sliding window of the local pool's layers (0: no split).
    window: usize,
}

impl KvPool {
    /// An empty pool for a model with these dimensions, holding at most `limit_bytes` (none:
    /// grows as the running sequences need).
    pub fn new(
        num_layers: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype: Dtype,
        limit_bytes: Option<usize>,
    ) -> KvPool {
        let per_slot = num_layers * 2 * kv_heads * head_dim * dtype.size();
        let limit = limit_bytes.map_or(usize::MAX, |b| (b / per_slot.max(1)).max(GRAIN));
        KvPool {
            layers: num_layers,
            keys: Vec::new(),
            values: Vec::new(),
            joint: false,
            refs: Vec::new(),
            free: Vec::new(),
            limit,
            kv_heads: kv_heads as i32,
            head_dim: head_dim as i32,
            dtype,
            local: None,
            sliding: Vec::new(),
            index: Vec::new(),
            window: 0,
        }
    }

    /// A pool whose sliding-window layers (`sliding[l]`) keep their keys and values apart, in a
    /// second pool with its own slots: a sequence holds slots there only for its most recent
    /// tokens (the scheduler releases the rest), so their memory is bounded by the window
    /// whatever the context length (see [`KvPool::trim_local`]). `limit_bytes` bounds
    /// the other layers' pool, the one that grows with the tokens; the local one is bounded by
    /// the window times the sequences running and cached.
    pub fn split(
        sliding: &[bool],
        window: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype: Dtype,
        limit_bytes: Option<usize>,
    ) -> KvPool {
        let n = sliding.len();
        let n_local = sliding.iter().filter(|&&s| s).count();
        if n_local == 0 {
            return KvPool::new(n, kv_heads, head_dim, dtype, limit_bytes);
        }
        let mut pool = KvPool::new(n - n_local, kv_heads, head_dim, dtype, limit_bytes);
        pool.local = Some(Box::new(KvPool::new(n_local, kv_heads, head_dim, dtype, None)));
        let (mut g, mut l) = (0, 0);
        pool.index = sliding
            .iter()
            .map(|&s| {
                let c = if s { &mut l } else { &mut g };
                *c += 1;
                *c - 1
            })
            .collect();
        pool.sliding = sliding.to_vec();
        pool.window = window.max(1);
        pool
    }

    /// The same pool with each layer's keys and values in one buffer `[capacity, 2, kv_heads,
    /// head_dim]` (the local pool's too), as the CPU's fused attention reads and writes them.
    /// Before the first [`KvPool::grow`].
    pub fn joined(mut self) -> KvPool {
        debug_assert!(self.keys.is_empty(), "a pool is joined before it holds buffers");
        self.joint = true;
        self.local = self.local.map(|l| Box::new(l.joined()));
        self
    }

    /// A layer buffer's shape for `slots` slots.
    fn shape(&self, slots: usize) -> Vec<i32> {
        if self.joint {
            vec![slots as i32, 2, self.kv_heads, self.head_dim]
        } else {
            vec![slots as i32, self.kv_heads, self.head_dim]
        }
    }

    /// Every layer's buffers (keys then values, or the joined ones).
    fn buffers_mut(&mut self) -> impl Iterator<Item = &mut Array> {
        self.keys.iter_mut().chain(self.values.iter_mut())
    }

    /// The sliding window, when the pool is split.
    pub fn window(&self) -> Option<usize> {
        (self.local.is_some()).then_some(self.window)
    }

    /// Gives back a holder's local slots beyond the ones it keeps: those of its last
    /// 2 × window tokens (one window of slack, for a request resuming a cached conversation a
    /// little before its end). Nothing when the pool is not split.
    pub fn trim_local(&mut self, local: &mut Vec<u32>) {
        let keep = 2 * self.window;
        if let Some(pool) = self.local.as_mut()
            && local.len() > keep
        {
            let old: Vec<u32> = local.drain(..local.len() - keep).collect();
            pool.release(&old);
        }
    }

    /// Appends `n` fresh slots to a holder's `slots` and, when split, its `local` slots; false
    /// (and nothing taken) when either pool has fewer free.
    pub fn extend(&mut self, slots: &mut Vec<u32>, local: &mut Vec<u32>, n: usize) -> bool {
        if self.free_slots_all() < n {
            return false;
        }
        slots.extend(self.alloc(n).expect("checked"));
        if let Some(pool) = self.local.as_mut() {
            local.extend(pool.alloc(n).expect("checked"));
        }
        true
    }

    /// Takes one more reference to a holder's slots and local slots (sharing a prefix).
    pub fn retain_with_local(&mut self, slots: &[u32], local: &[u32]) {
        self.retain(slots);
        if let Some(pool) = self.local.as_mut() {
            pool.retain(local);
        }
    }

    /// Drops a holder's references to its slots and local slots.
    pub fn release_with_local(&mut self, slots: &[u32], local: &[u32]) {
        self.release(slots);
        if let Some(pool) = self.local.as_mut() {
            pool.release(local);
        }
    }

    /// Free slots in this pool and, when split, in the local one too (the fewer of the two).
    pub fn free_slots_all(&self) -> usize {
        self.local.as_ref().map_or(self.free.len(), |l| self.free.len().min(l.free.len()))
    }

    /// [`KvPool::grow`] for this pool and the local one.
    pub fn grow_all(&mut self, need: usize) -> Result<()> {
        self.grow(need)?;
        match self.local.as_mut() {
            Some(l) => l.grow(need),
            None => Ok(()),
        }
    }

    /// Where layer `layer`'s buffers are: the local pool or this one, and the index there.
    fn place(&self, layer: usize) -> (bool, usize) {
        (self.sliding.get(layer).copied().unwrap_or(false), self.index.get(layer).copied().unwrap_or(layer))
    }

    /// Slots the buffers hold (including the scratch slot).
    pub fn capacity(&self) -> usize {
        self.refs.len()
    }

    /// Slots no one holds.
    pub fn free_slots(&self) -> usize {
        self.free.len()
    }

    /// Bytes one slot takes across all layers.
    pub fn slot_bytes(&self) -> usize {
        self.layers * 2 * (self.kv_heads * self.head_dim) as usize * self.dtype.size()
    }

    /// Bytes reserved by the buffers (the local pool's included).
    pub fn reserved_bytes(&self) -> usize {
        self.capacity() * self.slot_bytes() + self.local.as_ref().map_or(0, |l| l.reserved_bytes())
    }

    /// `n` fresh slots, each held once by the caller; `None` when fewer are free (the caller may
    /// evict prefix-cache entries or [`KvPool::grow`] first).
    pub fn alloc(&mut self, n: usize) -> Option<Vec<u32>> {
        if self.free.len() < n {
            return None;
        }
        let out = self.free.split_off(self.free.len() - n);
        for &s in &out {
            self.refs[s as usize] = 1;
        }
        Some(out.into_iter().rev().collect())
    }

    /// Takes one more reference to each slot (a sequence sharing a prefix).
    pub fn retain(&mut self, slots: &[u32]) {
        for &s in slots {
            self.refs[s as usize] += 1;
        }
    }

    /// Drops one reference to each slot; slots nobody holds become free.
    pub fn release(&mut self, slots: &[u32]) {
        for &s in slots {
            let r = &mut self.refs[s as usize];
            debug_assert!(*r > 0 && s != 0, "slot {s} released more often than held");
            *r -= 1;
            if *r == 0 {
                self.free.push(s);
            }
        }
    }

    /// Grows the buffers so at least `need` slots are free, within the pool's limit. Existing
    /// slots keep their numbers and contents.
    pub fn grow(&mut self, need: usize) -> Result<()> {
        if self.free.len() >= need {
            return Ok(());
        }
        let old = self.capacity();
        let scratch = (old == 0) as usize;
        let wanted = (old + scratch + need - self.free.len()).max(old + old / 2).max(GRAIN);
        let mut new = wanted.div_ceil(GRAIN) * GRAIN;
        if new > self.limit {
            new = self.limit.max(old);
            if new - old - scratch + self.free.len() < need {
                return Err(EngineError::KvCacheFull {
                    needed: need,
                    free: self.free.len(),
                    capacity: old,
                    bytes: old * self.slot_bytes(),
                });
            }
        }
        let extra = self.shape(new - old);
        let dtype = self.dtype;
        if old == 0 {
            for _ in 0..self.layers {
                self.keys.push(Array::zeros(&extra, dtype)?);
                if !self.joint {
                    self.values.push(Array::zeros(&extra, dtype)?);
                }
            }
        } else {
            for buf in self.buffers_mut() {
                *buf = ops::concatenate(&[buf, &Array::zeros(&extra, dtype)?], 0)?;
            }
        }
        self.refs.resize(new, 0);
        if old == 0 {
            self.refs[0] = 1; // scratch, never free
        }
        // Push in descending order so that the lowest new slots are handed out first.
        let first_new = if old == 0 { 1 } else { old };
        let mut added: Vec<u32> = (first_new as u32..new as u32).rev().collect();
        added.append(&mut self.free);
        self.free = added;
        tracing::debug!(from = old, to = new, bytes = new * self.slot_bytes(), "KV pool grown");
        Ok(())
    }

    /// Shrinks the buffers to the slots still held, renumbering them; `holders` are every list of
    /// slots anyone keeps (they are rewritten). For when no step is running: the buffers are
    /// copied.
    pub fn compact<'a>(&mut self, holders: impl IntoIterator<Item = &'a mut Vec<u32>>) -> Result<()> {
        let old = self.capacity();
        if old == 0 {
            return Ok(());
        }
        let live: Vec<u32> = (0..old as u32).filter(|&s| self.refs[s as usize] > 0).collect();
        let new = live.len().div_ceil(GRAIN).max(1) * GRAIN;
        if new >= old {
            return Ok(());
        }
        let mut map = vec![u32::MAX; old];
        for (i, &s) in live.iter().enumerate() {
            map[s as usize] = i as u32;
        }
        let idx = Array::from_u32(&live, &[live.len() as i32])?;
        let pad = self.shape(new - live.len());
        let dtype = self.dtype;
        for buf in self.buffers_mut() {
            let kept = ops::take(buf, &idx, 0)?;
            *buf = if pad[0] > 0 { ops::concatenate(&[&kept, &Array::zeros(&pad, dtype)?], 0)? } else { kept };
        }
        let refs: Vec<u32> =
            live.iter().map(|&s| self.refs[s as usize]).chain(std::iter::repeat_n(0, pad[0] as usize)).collect();
        self.refs = refs;
        self.free = (live.len() as u32..new as u32).rev().collect();
        for h in holders {
            for s in h.iter_mut() {
                *s = map[*s as usize];
            }
        }
        mlx::ArrayList::of(self.arrays()).eval()?;
        tracing::debug!(from = old, to = new, "KV pool compacted");
        Ok(())
    }

    /// Drops the buffers when no slot is held (nothing running, nothing cached).
    pub fn release_memory_if_unused(&mut self) {
        if let Some(l) = self.local.as_mut() {
            l.release_memory_if_unused();
        }
        if self.capacity() > 0 && self.free.len() + 1 == self.capacity() {
            self.keys.clear();
            self.values.clear();
            self.refs.clear();
            self.free.clear();
        }
    }

    /// Writes the keys and values `[rows, kv_heads, 1, head_dim]` of this step's tokens into
    /// `slots` `[rows]` of `layer`.
    /// For a sliding-window layer of a split pool, `slots` are the local pool's.
    pub fn write(&mut self, layer: usize, slots: &Array, k: &Array, v: &Array) -> Result<()> {
        let (local, layer) = self.place(layer);
        if local && let Some(l) = self.local.as_mut() {
            return l.write(layer, slots, k, v);
        }
        let rows = k.dim(0);
        let shape = [rows, 1, self.kv_heads, self.head_dim];
        if self.joint {
            let (k, v) = (ops::reshape(k, &shape)?, ops::reshape(v, &shape)?);
            let rows = ops::stack(&[&k, &v], 2)?;
            self.keys[layer] = ops::scatter(&self.keys[layer], slots, &rows, 0)?;
            return Ok(());
        }
        self.keys[layer] = ops::scatter(&self.keys[layer], slots, &ops::reshape(k, &shape)?, 0)?;
        self.values[layer] = ops::scatter(&self.values[layer], slots, &ops::reshape(v, &shape)?, 0)?;
        Ok(())
    }

    /// The joined buffer of `layer` `[slots, 2, kv_heads, head_dim]` (the local pool's for a
    /// sliding-window layer of a split pool); `None` when the pool is not joined.
    pub fn joint_buffer(&self, layer: usize) -> Option<&Array> {
        let (local, l) = self.place(layer);
        if local && let Some(p) = self.local.as_ref() {
            return p.joint_buffer(l);
        }
        self.joint.then(|| &self.keys[l])
    }

    /// Replaces `layer`'s joined buffer with one computed from it (the fused attention's output,
    /// which wrote the step's rows).
    pub fn set_joint_buffer(&mut self, layer: usize, kv: Array) {
        let (local, l) = self.place(layer);
        if local && let Some(p) = self.local.as_mut() {
            return p.set_joint_buffer(l, kv);
        }
        debug_assert!(self.joint);
        self.keys[l] = kv;
    }

    /// Keys and values of `slots` `[b * s]` of `layer`, as `[b, kv_heads, s, head_dim]`.
    /// For a sliding-window layer of a split pool, `slots` are the local pool's.
    pub fn gather(&self, layer: usize, slots: &Array, b: i32, s: i32) -> Result<(Array, Array)> {
        let (local, layer) = self.place(layer);
        if local && let Some(l) = self.local.as_ref() {
            return l.gather(layer, slots, b, s);
        }
        let heads = |rows: &Array| -> Result<Array> {
            let rows = ops::reshape(rows, &[b, s, self.kv_heads, self.head_dim])?;
            Ok(ops::transpose(&rows, &[0, 2, 1, 3])?)
        };
        if self.joint {
            let rows = ops::take(&self.keys[layer], slots, 0)?;
            let half = |i: i32| heads(&ops::slice_axis(&rows, 1, i, i + 1)?);
            return Ok((half(0)?, half(1)?));
        }
        Ok((heads(&ops::take(&self.keys[layer], slots, 0)?)?, heads(&ops::take(&self.values[layer], slots, 0)?)?))
    }

    /// A tiny array computed from the last layer's buffer: ready once a step's writes are, and
    /// holding no reference to the buffer itself (which would stop the next write in place).
    pub fn marker(&self) -> Result<Array> {
        let last = if self.joint { self.keys.last() } else { self.values.last() };
        let Some(last) = last else {
            // Every layer slides: the local pool holds every buffer.
            return self.local.as_ref().expect("a step has grown the pool").marker();
        };
        Ok(ops::sum(&ops::slice_axis(last, 0, 0, 1)?, -1, false)?)
    }

    /// Every buffer, for evaluation.
    pub fn arrays(&self) -> Vec<&Array> {
        let local = self.local.iter().flat_map(|l| l.arrays());
        self.keys.iter().chain(self.values.iter()).chain(local).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_shared_and_freed() {
        let mut p = KvPool::new(2, 1, 4, Dtype::F32, None);
        assert!(p.alloc(1).is_none(), "an empty pool has no free slot");
        p.grow(3).unwrap();
        assert_eq!(p.capacity(), GRAIN);
        assert_eq!(p.free_slots(), GRAIN - 1, "slot 0 is scratch");
        let a = p.alloc(3).unwrap();
        assert_eq!(a, vec![1, 2, 3], "lowest slots first, in order");
        p.retain(&a[..2]);
        p.release(&a);
        assert_eq!(p.free_slots(), GRAIN - 3, "shared slots stay held");
        p.release(&a[..2]);
        assert_eq!(p.free_slots(), GRAIN - 1);
        p.release_memory_if_unused();
        assert_eq!(p.capacity(), 0);
    }

    #[test]
    fn growth_counts_the_scratch_slot() {
        let mut p = KvPool::new(1, 1, 2, Dtype::F32, None);
        p.grow(GRAIN).unwrap();
        assert!(p.alloc(GRAIN).is_some(), "a first growth of exactly GRAIN slots leaves GRAIN free");
    }

    #[test]
    fn grow_keeps_contents_and_compact_renumbers() {
        // Both layouts: keys and values apart, and joined in one buffer.
        for joint in [false, true] {
            let p = KvPool::new(1, 1, 2, Dtype::F32, None);
            let mut p = if joint { p.joined() } else { p };
            p.grow(1).unwrap();
            let mut s = p.alloc(GRAIN - 1).unwrap();
            let last = *s.last().unwrap();
            let k = Array::from_f32(&[7.0, 8.0], &[1, 1, 1, 2]).unwrap();
            let v = Array::from_f32(&[-1.0, -2.0], &[1, 1, 1, 2]).unwrap();
            p.write(0, &Array::from_u32(&[last], &[1]).unwrap(), &k, &v).unwrap();
            assert_eq!(p.joint_buffer(0).is_some(), joint);
            p.grow(10).unwrap();
            assert!(p.capacity() > GRAIN);
            let read = |p: &KvPool, slot: u32| {
                let (keys, values) = p.gather(0, &Array::from_u32(&[slot], &[1]).unwrap(), 1, 1).unwrap();
                (keys.to_f32().unwrap(), values.to_f32().unwrap())
            };
            assert_eq!(read(&p, last), (vec![7.0, 8.0], vec![-1.0, -2.0]), "joint {joint}");
            // Keep only the last slot; compaction moves it to slot 1.
            let mut kept = vec![last];
            p.release(&s[..s.len() - 1]);
            s.clear();
            let big = p.capacity();
            p.compact([&mut kept]).unwrap();
            assert!(p.capacity() < big);
            assert_eq!(kept, vec![1]);
            assert_eq!(read(&p, 1), (vec![7.0, 8.0], vec![-1.0, -2.0]), "joint {joint}");
        }
    }

    #[test]
    fn limit_is_enforced_with_a_clear_error() {
        let per_slot = 2 * 2 * 4 * 4;
        let mut p = KvPool::new(2, 2, 4, Dtype::F32, Some(GRAIN * per_slot));
        p.grow(10).unwrap();
        let e = p.grow(GRAIN).unwrap_err();
        assert!(e.to_string().contains("KV cache"), "{e}");
    }
}
