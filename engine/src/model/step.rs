//! One batched step's input, laid out so the forward pass is the same few operations per layer
//! whatever the batch holds: the tokens of every decode row and of every prompt chunk go through
//! the projections as one set of rows; attention is one call for all decode rows and one for all
//! prompt chunks, each reading its own KV slots through a gather and a mask.
//!
//! Row layout: `[decode rows, padded to B] + [prompt chunks, each padded to L, padded to P]`.
//! [`Shapes`] chooses B, L, P and the attention width S from a small fixed set on a GPU (MLX
//! plans kernels and cuDNN graphs per shape there, so a fresh model must not meet a new shape per
//! request) and exactly on the CPU (where padding is real work and shapes cost nothing). Padding
//! rows run token 0, write the scratch slot 0 and attend to it, so they stay finite and touch no
//! sequence.

use mlx::{Array, ops};

use crate::error::Result;

/// Where a decode row's input token comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// Known on the host.
    Host(u32),
    /// Row `i` of the previous step's sampled tokens, still on the device (the step overlapping
    /// it was built before it finished).
    Device(u32),
}

/// A sequence's next token.
pub struct DecodeRow<'a> {
    /// Every slot of the sequence, the last one for this token.
    pub slots: &'a [u32],
    /// The sequence's slots in the pool's sliding-window part: its most recent tokens only, the
    /// last one for this token (empty when the pool has no such part).
    pub local: &'a [u32],
    /// The token.
    pub token: TokenSource,
}

/// The next chunk of a sequence's prompt.
pub struct PrefillRow<'a> {
    /// Every slot of the sequence, ending with this chunk's.
    pub slots: &'a [u32],
    /// The sequence's most recent sliding-window slots, ending with this chunk's (or empty).
    pub local: &'a [u32],
    /// The chunk's tokens (as many as the trailing slots they go to).
    pub tokens: &'a [u32],
    /// Whether the logits of the chunk's last token are wanted.
    pub logits: bool,
}

/// The shapes a step is padded to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shapes {
    /// Round batch and chunk sizes up to powers of two (else run them exactly).
    pub pow2: bool,
    /// Attention widths are multiples of this.
    pub kv_grain: usize,
}

/// Chunks are never padded below this many tokens when rounding to powers of two.
const MIN_POW2_CHUNK: usize = 16;

impl Shapes {
    /// The policy for the device MLX runs on: fixed buckets on a GPU, exact shapes on the CPU.
    pub fn for_device() -> Shapes {
        if mlx::default_device_is_gpu() { Shapes::buckets() } else { Shapes::exact() }
    }

    /// Powers of two and attention widths in steps of 256 (a GPU: few distinct kernels).
    pub fn buckets() -> Shapes {
        Shapes { pow2: true, kv_grain: 256 }
    }

    /// No padding at all (the CPU: padding is real work, and shapes cost nothing to plan).
    pub fn exact() -> Shapes {
        Shapes { pow2: false, kv_grain: 1 }
    }

    /// Rows for `n` decode rows or prompt chunks.
    pub fn rows(&self, n: usize) -> usize {
        if self.pow2 { n.next_power_of_two() } else { n }
    }

    /// Padded length of a chunk of at most `n` tokens.
    pub fn chunk(&self, n: usize) -> usize {
        if self.pow2 { n.max(MIN_POW2_CHUNK).next_power_of_two() } else { n.div_ceil(8) * 8 }
    }

    /// Attention width for sequences of at most `n` tokens.
    pub fn width(&self, n: usize) -> usize {
        n.max(1).div_ceil(self.kv_grain) * self.kv_grain
    }
}

/// Attention of the decode rows: every row reads `width` slots, masked to its own length (no mask
/// when every row fills the width: a lone sequence on the CPU).
pub(crate) struct DecodeAttention {
    pub rows: i32,
    pub width: i32,
    pub gather: Array,
    pub mask: Option<Array>,
    /// Each row's length `[rows, 1, 1, 1]`: its last key is column `len - 1`.
    pub lens: Array,
}

/// Attention of the prompt chunks.
pub(crate) struct PrefillAttention {
    pub chunks: i32,
    pub len: i32,
    /// `None` when every chunk starts its sequence: the chunk's own keys with a causal mask.
    pub cached: Option<CachedPrefix>,
    /// One past each token's own key column `[chunks, 1, len, 1]` (in the cached width, or in
    /// the chunk when it starts its sequence).
    pub ends: Array,
}

/// Prompt chunks that continue a sequence read its earlier slots too.
pub(crate) struct CachedPrefix {
    pub width: i32,
    pub gather: Array,
    pub mask: Array,
}

/// Everything a forward pass needs besides the weights and the pool.
pub struct StepInput {
    pub(crate) ids: Array,
    pub(crate) positions: Array,
    pub(crate) write: Array,
    pub(crate) decode: Option<DecodeAttention>,
    pub(crate) prefill: Option<PrefillAttention>,
    /// The same for the sliding-window layers' own slots, when the pool keeps them apart.
    pub(crate) local: Option<Layout>,
    /// Rows whose logits are wanted: the decode rows in order, then each chunk that asked.
    pub(crate) logits_rows: Option<Array>,
    /// Whether the marked rows are every row, in order (a decode step without padding): the
    /// forward pass then skips picking them.
    pub(crate) every_row: bool,
    /// Rows in all, padding included.
    pub rows: usize,
    /// Rows that carry a real token.
    pub real_rows: usize,
}

impl StepInput {
    /// Where a layer's rows write and what its decode rows and chunks attend to: the
    /// sliding-window layers' own slots when the pool keeps them apart, else the step's.
    pub(crate) fn for_layer(&self, sliding: bool) -> (&Array, Option<&DecodeAttention>, Option<&PrefillAttention>) {
        match (&self.local, sliding) {
            (Some(local), true) => (&local.write, local.decode.as_ref(), local.prefill.as_ref()),
            _ => (&self.write, self.decode.as_ref(), self.prefill.as_ref()),
        }
    }
}

/// The masks of sliding-window layers, built once per step.
pub(crate) struct WindowMasks {
    pub decode: Option<Array>,
    pub prefill: Option<Array>,
}

/// Masks that also hide keys `window` or more positions behind each query (key `j` is seen from
/// position `i` when `i - window < j <= i`, as mlx-lm's sliding-window mask has it). Every row
/// keeps its own key, so no row is left with nothing to attend to.
pub(crate) fn window_masks(
    decode: Option<&DecodeAttention>,
    prefill: Option<&PrefillAttention>,
    window: usize,
) -> Result<WindowMasks> {
    let w = Array::scalar_i32(window as i32)?;
    let band = |cols: i32, ends: &Array| -> Result<Array> {
        let cols = ops::reshape(&Array::arange(0, cols)?, &[1, 1, 1, cols])?;
        Ok(ops::logical_and(&ops::less(&cols, ends)?, &ops::greater_equal(&cols, &ops::subtract(ends, &w)?)?)?)
    };
    let decode = decode.map(|d| band(d.width, &d.lens)).transpose()?;
    let prefill = prefill.map(|p| band(p.cached.as_ref().map_or(p.len, |c| c.width), &p.ends)).transpose()?;
    Ok(WindowMasks { decode, prefill })
}

/// Where a step's rows write and what they attend to, in one slot space.
pub(crate) struct Layout {
    pub write: Array,
    pub decode: Option<DecodeAttention>,
    pub prefill: Option<PrefillAttention>,
}

impl Layout {
    /// [`window_masks`] of this layout.
    pub(crate) fn window_masks(&self, window: usize) -> Result<WindowMasks> {
        window_masks(self.decode.as_ref(), self.prefill.as_ref(), window)
    }

    /// The layout of rows whose slot lists are `decode` (one token each) and `prefill` (each with
    /// its chunk's length), padded as `b` decode rows and `p` chunks of `l`.
    fn new(
        decode: &[&[u32]],
        prefill: &[(&[u32], usize)],
        (b, p, l): (usize, usize, usize),
        shapes: &Shapes,
    ) -> Result<Layout> {
        let mut write = Vec::with_capacity(b + p * l);
        for r in decode {
            write.push(r[r.len() - 1]);
        }
        write.resize(b, 0);
        let decode_attn = if b > 0 {
            let width = shapes.width(decode.iter().map(|r| r.len()).max().unwrap_or(1));
            let mut gather = vec![0u32; b * width];
            let mut lens = vec![1i32; b];
            for (i, r) in decode.iter().enumerate() {
                gather[i * width..i * width + r.len()].copy_from_slice(r);
                lens[i] = r.len() as i32;
            }
            let (bi, wi) = (b as i32, width as i32);
            let lens_arr = Array::from_i32(&lens, &[bi, 1, 1, 1])?;
            let mask = if lens.iter().all(|&n| n == wi) {
                None
            } else {
                let cols = ops::reshape(&Array::arange(0, wi)?, &[1, 1, 1, wi])?;
                Some(ops::less(&cols, &lens_arr)?)
            };
            Some(DecodeAttention {
                rows: bi,
                width: wi,
                gather: Array::from_u32(&gather, &[bi * wi])?,
                mask,
                lens: lens_arr,
            })
        } else {
            None
        };
        let fresh = prefill.iter().all(|&(slots, n)| slots.len() == n);
        let mut starts = vec![0i32; p];
        for (ci, &(slots, n)) in prefill.iter().enumerate() {
            let start = slots.len() - n;
            starts[ci] = start as i32;
            write.extend((0..l).map(|t| if t < n { slots[start + t] } else { 0 }));
        }
        write.resize(b + p * l, 0);
        let prefill_attn = if p > 0 {
            let (pi, li) = (p as i32, l as i32);
            let starts = if fresh { vec![0; p] } else { starts };
            let ends = ops::add(
                &Array::from_i32(&starts, &[pi, 1, 1, 1])?,
                &ops::reshape(&Array::arange(1, li + 1)?, &[1, 1, li, 1])?,
            )?;
            let cached = if fresh {
                None
            } else {
                let width = shapes.width(prefill.iter().map(|(slots, _)| slots.len()).max().unwrap_or(1));
                let mut gather = vec![0u32; p * width];
                for (ci, (slots, _)) in prefill.iter().enumerate() {
                    gather[ci * width..ci * width + slots.len()].copy_from_slice(slots);
                }
                let wi = width as i32;
                // Token t of chunk c sees columns up to its own position start[c] + t.
                let cols = ops::reshape(&Array::arange(0, wi)?, &[1, 1, 1, wi])?;
                Some(CachedPrefix {
                    width: wi,
                    gather: Array::from_u32(&gather, &[pi * wi])?,
                    mask: ops::less(&cols, &ends)?,
                })
            };
            Some(PrefillAttention { chunks: pi, len: li, cached, ends })
        } else {
            None
        };
        let r = write.len() as i32;
        Ok(Layout { write: Array::from_u32(&write, &[r])?, decode: decode_attn, prefill: prefill_attn })
    }
}

impl StepInput {
    /// Lays out one step. `prev` holds the previous step's sampled tokens when a decode row's
    /// token is [`TokenSource::Device`].
    pub fn build(
        decode: &[DecodeRow<'_>],
        prefill: &[PrefillRow<'_>],
        prev: Option<&Array>,
        shapes: &Shapes,
    ) -> Result<StepInput> {
        let b = if decode.is_empty() { 0 } else { shapes.rows(decode.len()) };
        let p = if prefill.is_empty() { 0 } else { shapes.rows(prefill.len()) };
        let l = prefill.iter().map(|c| c.tokens.len()).max().map_or(0, |n| shapes.chunk(n));
        let rows = b + p * l;
        let mut positions = Vec::with_capacity(rows);
        let mut logits_rows = Vec::new();

        // Decode rows: token ids come from the host or from the previous step's output.
        let mut host_ids = Vec::with_capacity(rows);
        let mut from_prev = Vec::new(); // (row, index into prev)
        for (i, r) in decode.iter().enumerate() {
            positions.push((r.slots.len() - 1) as i32);
            logits_rows.push(i as i32);
            match r.token {
                TokenSource::Host(t) => host_ids.push(t),
                TokenSource::Device(j) => {
                    from_prev.push((i, j));
                    host_ids.push(0);
                }
            }
        }
        positions.resize(b, 0);
        host_ids.resize(b, 0);

        // Prompt chunks.
        for (ci, c) in prefill.iter().enumerate() {
            let n = c.tokens.len();
            let start = c.slots.len() - n;
            for t in 0..l {
                positions.push((start + t) as i32);
                host_ids.push(if t < n { c.tokens[t] } else { 0 });
            }
            if c.logits {
                logits_rows.push((b + ci * l + n - 1) as i32);
            }
        }
        for _ in prefill.len()..p {
            positions.extend(0..l as i32);
            host_ids.resize(host_ids.len() + l, 0);
        }
        let dims = (b, p, l);
        let global = Layout::new(
            &decode.iter().map(|r| r.slots).collect::<Vec<_>>(),
            &prefill.iter().map(|c| (c.slots, c.tokens.len())).collect::<Vec<_>>(),
            dims,
            shapes,
        )?;
        // The sliding-window slots: the same rows over each sequence's recent slots only.
        let local = if decode.iter().any(|r| !r.local.is_empty()) || prefill.iter().any(|c| !c.local.is_empty()) {
            Some(Layout::new(
                &decode.iter().map(|r| r.local).collect::<Vec<_>>(),
                &prefill.iter().map(|c| (c.local, c.tokens.len())).collect::<Vec<_>>(),
                dims,
                shapes,
            )?)
        } else {
            None
        };

        let r = rows as i32;
        let mut ids = Array::from_u32(&host_ids, &[r])?;
        if !from_prev.is_empty() {
            let prev = prev.expect("a device-sourced token needs the previous step's tokens");
            let at: Vec<u32> = from_prev.iter().map(|&(i, _)| i as u32).collect();
            let src: Vec<u32> = from_prev.iter().map(|&(_, j)| j).collect();
            let n = at.len() as i32;
            let picked = ops::take(prev, &Array::from_u32(&src, &[n])?, 0)?;
            ids = ops::scatter(&ids, &Array::from_u32(&at, &[n])?, &ops::reshape(&picked, &[n, 1])?, 0)?;
        }
        let every_row = logits_rows.len() == rows && logits_rows.iter().enumerate().all(|(i, &r)| r == i as i32);
        let logits_rows = if logits_rows.is_empty() {
            None
        } else {
            Some(Array::from_i32(&logits_rows, &[logits_rows.len() as i32])?)
        };
        Ok(StepInput {
            ids,
            positions: Array::from_i32(&positions, &[r])?,
            write: global.write,
            decode: global.decode,
            prefill: global.prefill,
            local,
            logits_rows,
            every_row,
            rows,
            real_rows: decode.len() + prefill.iter().map(|c| c.tokens.len()).sum::<usize>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_few_and_exact_shapes_exact() {
        let g = Shapes::buckets();
        assert_eq!((g.rows(3), g.rows(8), g.rows(9)), (4, 8, 16));
        assert_eq!((g.chunk(5), g.chunk(33), g.chunk(512)), (16, 64, 512));
        assert_eq!((g.width(1), g.width(256), g.width(257)), (256, 256, 512));
        let c = Shapes::exact();
        assert_eq!((c.rows(3), c.chunk(5), c.chunk(33), c.width(40)), (3, 8, 40, 40));
    }

    #[test]
    fn layout_puts_decode_rows_first_and_pads_with_scratch() {
        let s = Shapes::buckets();
        let (a, b) = ([1u32, 2, 3], [4u32, 5]);
        let decode = [
            DecodeRow { slots: &a, local: &[], token: TokenSource::Host(11) },
            DecodeRow { slots: &b, local: &[], token: TokenSource::Device(1) },
            DecodeRow { slots: &b, local: &[], token: TokenSource::Host(12) },
        ];
        let prompt = [6u32, 7];
        let chunk = [9u32, 8];
        let prefill = [PrefillRow { slots: &prompt, local: &[], tokens: &chunk, logits: true }];
        let prev = Array::from_u32(&[100, 200], &[2]).unwrap();
        let x = StepInput::build(&decode, &prefill, Some(&prev), &s).unwrap();
        assert_eq!(x.rows, 4 + 16);
        assert_eq!(x.real_rows, 5);
        let ids = x.ids.to_u32().unwrap();
        assert_eq!(&ids[..6], &[11, 200, 12, 0, 9, 8]);
        assert_eq!(&x.write.to_u32().unwrap()[..7], &[3, 5, 5, 0, 6, 7, 0]);
        assert_eq!(&x.positions.to_i32().unwrap()[..6], &[2, 1, 1, 0, 0, 1]);
        assert_eq!(x.logits_rows.unwrap().to_i32().unwrap(), vec![0, 1, 2, 5]);
        let d = x.decode.unwrap();
        assert_eq!((d.rows, d.width), (4, 256));
        let mask = d.mask.expect("rows of different lengths are masked").to_i32().unwrap();
        assert_eq!(mask.iter().sum::<i32>(), 3 + 2 + 2 + 1);
        assert!(x.prefill.unwrap().cached.is_none(), "a chunk that starts its sequence needs no gather");
    }
}
