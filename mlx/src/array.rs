//! The owned [`Array`] handle, [`Dtype`], and [`ArrayList`] for multi-array calls.

use std::fmt;

use cxx::UniquePtr;

use crate::ffi::ffi;
use crate::{Result, err};

/// Element types, with the codes the C++ half of the bridge uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Dtype {
    Bool = 0,
    U8 = 1,
    U16 = 2,
    U32 = 3,
    U64 = 4,
    I8 = 5,
    I16 = 6,
    I32 = 7,
    I64 = 8,
    F16 = 9,
    F32 = 10,
    F64 = 11,
    BF16 = 12,
    C64 = 13,
}

impl Dtype {
    fn from_code(code: u8) -> Dtype {
        use Dtype::*;
        match code {
            0 => Bool,
            1 => U8,
            2 => U16,
            3 => U32,
            4 => U64,
            5 => I8,
            6 => I16,
            7 => I32,
            8 => I64,
            9 => F16,
            10 => F32,
            11 => F64,
            12 => BF16,
            _ => C64,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::F32 | Dtype::F64 | Dtype::BF16)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        use Dtype::*;
        match self {
            Bool | U8 | I8 => 1,
            U16 | I16 | F16 | BF16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | C64 => 8,
        }
    }
}

/// An owned MLX array. Cloning is cheap (the buffer is shared, as in MLX itself).
pub struct Array {
    pub(crate) inner: UniquePtr<ffi::array>,
}

impl Array {
    /// This array (evaluated) copied into memory in 2 MB pages where MLX's CPU-only build allows
    /// it (see `cpp/huge.cc`): for weights the CPU kernels stream every step. Elsewhere (a GPU
    /// backend, a small or strided array) the array itself.
    pub fn pin_huge(&self) -> crate::Result<Array> {
        Array::wrap("cpu_pin_huge", ffi::cpu_pin_huge(self.raw()))
    }

    pub(crate) fn wrap(
        op: &'static str,
        r: std::result::Result<UniquePtr<ffi::array>, cxx::Exception>,
    ) -> Result<Array> {
        r.map(|inner| Array { inner }).map_err(err(op))
    }

    pub(crate) fn raw(&self) -> &ffi::array {
        self.inner.as_ref().expect("Array is never null")
    }

    /// An array of `f32` data with the given shape.
    pub fn from_f32(data: &[f32], shape: &[i32]) -> Result<Array> {
        Array::wrap("from_f32", ffi::from_f32(data, shape))
    }

    /// An array of `i32` data with the given shape.
    pub fn from_i32(data: &[i32], shape: &[i32]) -> Result<Array> {
        Array::wrap("from_i32", ffi::from_i32(data, shape))
    }

    /// An array of `u32` data with the given shape.
    pub fn from_u32(data: &[u32], shape: &[i32]) -> Result<Array> {
        Array::wrap("from_u32", ffi::from_u32(data, shape))
    }

    /// A 0-d `f32` array.
    pub fn scalar_f32(v: f32) -> Result<Array> {
        Array::wrap("scalar", ffi::scalar_f32(v))
    }

    /// A 0-d `i32` array.
    pub fn scalar_i32(v: i32) -> Result<Array> {
        Array::wrap("scalar", ffi::scalar_i32(v))
    }

    /// Zeros of the given shape and type.
    pub fn zeros(shape: &[i32], dtype: Dtype) -> Result<Array> {
        Array::wrap("zeros", ffi::zeros(shape, dtype as u8))
    }

    /// An array filled with `v`.
    pub fn full(shape: &[i32], v: f32, dtype: Dtype) -> Result<Array> {
        Array::wrap("full", ffi::full_f32(shape, v, dtype as u8))
    }

    /// `[start, stop)` as `i32`.
    pub fn arange(start: i32, stop: i32) -> Result<Array> {
        Array::wrap("arange", ffi::arange_i32(start, stop))
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        ffi::ndim(self.raw())
    }

    /// The shape.
    pub fn shape(&self) -> Vec<i32> {
        ffi::shape(self.raw())
    }

    /// Size of dimension `axis` (negative counts from the end).
    pub fn dim(&self, axis: i32) -> i32 {
        let shape = self.shape();
        let i = if axis < 0 { shape.len() as i32 + axis } else { axis };
        shape[i as usize]
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        Dtype::from_code(ffi::dtype(self.raw()))
    }

    /// Number of elements.
    pub fn size(&self) -> usize {
        ffi::size(self.raw())
    }

    /// Bytes of data.
    pub fn nbytes(&self) -> usize {
        ffi::nbytes(self.raw())
    }

    /// Evaluates and copies the data out as `f32` (converting if needed), row-major.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        ffi::to_f32(self.raw()).map_err(err("to_f32"))
    }

    /// Evaluates and copies the data out as `i32`.
    pub fn to_i32(&self) -> Result<Vec<i32>> {
        ffi::to_i32(self.raw()).map_err(err("to_i32"))
    }

    /// Evaluates and copies the data out as `u32`.
    pub fn to_u32(&self) -> Result<Vec<u32>> {
        ffi::to_u32(self.raw()).map_err(err("to_u32"))
    }

    /// Evaluates this array.
    pub fn eval(&self) -> Result<()> {
        ffi::eval_one(self.raw()).map_err(err("eval"))
    }
}

impl Clone for Array {
    fn clone(&self) -> Array {
        Array::wrap("share", ffi::share(self.raw())).expect("sharing an array never throws")
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Array({:?}, {:?})", self.shape(), self.dtype())
    }
}

/// A list of arrays for calls that take several (concatenate, eval).
pub struct ArrayList {
    pub(crate) inner: UniquePtr<ffi::ArrayList>,
}

impl ArrayList {
    /// An empty list.
    pub fn new() -> ArrayList {
        ArrayList { inner: ffi::new_list() }
    }

    /// A list holding (shared references to) these arrays.
    pub fn of<'a>(arrays: impl IntoIterator<Item = &'a Array>) -> ArrayList {
        let mut l = ArrayList::new();
        for a in arrays {
            l.push(a);
        }
        l
    }

    /// Appends a shared reference to `a`.
    pub fn push(&mut self, a: &Array) {
        ffi::list_push(self.inner.pin_mut(), a.raw());
    }

    /// Number of arrays.
    pub fn len(&self) -> usize {
        ffi::list_len(&self.inner)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th array.
    pub fn get(&self, i: usize) -> Result<Array> {
        Array::wrap("list_get", ffi::list_get(&self.inner, i))
    }

    /// Evaluates every array in the list together.
    pub fn eval(&self) -> Result<()> {
        ffi::eval(&self.inner).map_err(err("eval"))
    }

    /// Operations evaluating the list would run (arrays not yet computed; an operation with
    /// several outputs counts once): the size of a step's graph.
    pub fn graph_nodes(&self) -> usize {
        ffi::graph_nodes(&self.inner)
    }

    /// Schedules evaluation without waiting for it.
    pub fn async_eval(&self) -> Result<()> {
        ffi::async_eval(&self.inner).map_err(err("async_eval"))
    }
}

impl Default for ArrayList {
    fn default() -> Self {
        ArrayList::new()
    }
}
