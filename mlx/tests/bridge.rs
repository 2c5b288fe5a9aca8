//! The bridge against real MLX: arithmetic, shapes, errors as values, files.

use std::sync::{Mutex, MutexGuard};

use mlx::ops;
use mlx::{Array, Dtype};

/// MLX's memory counters are process-wide, and the test harness runs tests on parallel threads:
/// every test that allocates holds this lock, so one test's frees never land inside another's
/// before/after measurement.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn matmul_and_readback() {
    let _serial = serial();
    let a = Array::from_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let b = Array::from_f32(&[5.0, 6.0, 7.0, 8.0], &[2, 2]).unwrap();
    let c = ops::matmul(&a, &b).unwrap();
    assert_eq!(c.shape(), vec![2, 2]);
    assert_eq!(c.to_f32().unwrap(), vec![19.0, 22.0, 43.0, 50.0]);
}

#[test]
fn shape_mismatch_is_an_error_not_an_abort() {
    let _serial = serial();
    let a = Array::from_f32(&[1.0; 6], &[2, 3]).unwrap();
    let b = Array::from_f32(&[1.0; 6], &[2, 3]).unwrap();
    let e = ops::matmul(&a, &b).unwrap_err();
    assert_eq!(e.op, "matmul");
    assert!(e.message.contains("shape") || e.message.contains("dimension"), "{e}");
    let e = Array::from_f32(&[1.0; 5], &[2, 3]).unwrap_err();
    assert!(e.message.contains("5 elements"), "{e}");
}

#[test]
fn quantize_roundtrip_and_matmul_agree() {
    let _serial = serial();
    let w: Vec<f32> = (0..64 * 32).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
    let w = Array::from_f32(&w, &[32, 64]).unwrap();
    let (q, s, b) = ops::quantize(&w, 32, 4).unwrap();
    assert_eq!(q.dtype(), Dtype::U32);
    let x = Array::from_f32(&vec![0.5; 64], &[1, 64]).unwrap();
    let spec = ops::Quantization { scales: &s, biases: Some(&b), group_size: 32, bits: 4, mode: "affine" };
    let y_q = ops::quantized_matmul(&x, &q, &spec, true).unwrap().to_f32().unwrap();
    let wd = ops::dequantize(&q, &spec, Dtype::F32).unwrap();
    let y_d = ops::matmul(&x, &ops::transpose(&wd, &[1, 0]).unwrap()).unwrap().to_f32().unwrap();
    for (a, b) in y_q.iter().zip(&y_d) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
}

#[test]
fn missing_file_is_an_error() {
    let _serial = serial();
    let e = mlx::Gguf::load(std::path::Path::new("/nonexistent/model.gguf")).err().unwrap();
    assert_eq!(e.op, "load_gguf");
    let e = mlx::Safetensors::load(std::path::Path::new("/nonexistent/model.safetensors")).err().unwrap();
    assert_eq!(e.op, "load_safetensors");
}

/// A GGUF file as the spec lays it out: one F32 tensor `t` of `n` values and one string key,
/// `data` bytes of tensor data after the aligned header.
fn gguf_bytes(n: u64, n_kv_claimed: u64, data: usize) -> Vec<u8> {
    let s = |b: &mut Vec<u8>, x: &str| {
        b.extend((x.len() as u64).to_le_bytes());
        b.extend(x.as_bytes());
    };
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(n_kv_claimed.to_le_bytes());
    s(&mut b, "general.name");
    b.extend(8u32.to_le_bytes());
    s(&mut b, "tiny");
    s(&mut b, "t.weight");
    b.extend(1u32.to_le_bytes());
    b.extend(n.to_le_bytes());
    b.extend(0u32.to_le_bytes()); // F32
    b.extend(0u64.to_le_bytes());
    b.resize(b.len().div_ceil(32) * 32, 0);
    b.extend((0..data).map(|i| if i % 4 == 3 { 0x3f } else { 0 })); // 0.5 = 0x3f000000, little-endian
    b
}

#[test]
fn gguf_reader_reads_tensors_and_refuses_bad_files() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("mlx-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut g = mlx::Gguf::load(&write("ok.gguf", &gguf_bytes(4, 1, 16))).unwrap();
    assert_eq!(g.string("general.name").as_deref(), Some("tiny"));
    assert_eq!(g.tensor_keys(), vec!["t.weight".to_string()]);
    let t = g.take("t.weight").unwrap();
    assert_eq!((t.shape(), t.dtype()), (vec![4], Dtype::F32));
    assert_eq!(t.to_f32().unwrap(), vec![f32::from_bits(0x3f00_0000); 4]);
    assert!(g.take("t.weight").is_err());

    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("magic.gguf", b"GGML\0\0\0\0".to_vec(), "no GGUF magic"),
        ("short.gguf", gguf_bytes(4, 1, 8), "past the end of the file"),
        ("count.gguf", gguf_bytes(4, u64::MAX, 16), "bad header"),
        ("cut.gguf", gguf_bytes(4, 1, 16)[..30].to_vec(), "bad header"),
    ];
    for (name, bytes, want) in cases {
        let e = mlx::Gguf::load(&write(name, &bytes)).err().unwrap();
        assert_eq!(e.op, "load_gguf");
        assert!(e.message.contains(want), "{name}: {}", e.message);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn safetensors_roundtrip() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("mlx-bridge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.safetensors");
    let a = Array::from_f32(&[1.0, 2.0, 3.0], &[3]).unwrap();
    mlx::save_safetensors(&path, &[("a".into(), a)]).unwrap();
    let mut st = mlx::Safetensors::load(&path).unwrap();
    assert_eq!(st.keys(), vec!["a".to_string()]);
    assert_eq!(st.take("a").unwrap().to_f32().unwrap(), vec![1.0, 2.0, 3.0]);
    assert!(st.take("a").is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn rope_and_attention_shapes() {
    let _serial = serial();
    let x = Array::full(&[1, 2, 3, 8], 0.5, Dtype::F32).unwrap();
    let r = ops::rope(&x, 8, false, 10000.0, 1.0, 4).unwrap();
    assert_eq!(r.shape(), vec![1, 2, 3, 8]);
    let o = ops::scaled_dot_product_attention(&r, &r, &r, 0.3, "causal").unwrap();
    assert_eq!(o.shape(), vec![1, 2, 3, 8]);
    o.eval().unwrap();
}

#[test]
fn memory_statistics_move() {
    let _serial = serial();
    let before = mlx::active_memory();
    let a = Array::full(&[1024, 1024], 1.0, Dtype::F32).unwrap();
    a.eval().unwrap();
    assert!(mlx::active_memory() >= before + 4 * 1024 * 1024, "{} -> {}", before, mlx::active_memory());
    drop(a);
    assert!(
        mlx::active_memory() < before + 4 * 1024 * 1024,
        "a 4 MiB array freed: {before} -> {}",
        mlx::active_memory()
    );
    assert!(mlx::version().starts_with("0.32"));
}

/// `pin_huge` copies a weight into 2 MB pages (MLX's CPU-only build): the same values, read by
/// MLX's own operations, counted in the memory statistics while alive and given back when
/// dropped. Elsewhere it returns the array itself.
#[test]
fn pinned_arrays_keep_their_values_and_give_their_memory_back() {
    let _serial = serial();
    let values: Vec<f32> = (0..600 * 500).map(|i| (i % 977) as f32 * 0.5 - 100.0).collect();
    let a = Array::from_f32(&values, &[600, 500]).unwrap();
    a.eval().unwrap();
    let bytes = a.nbytes();
    let before = mlx::active_memory();
    let pinned: Vec<Array> = (0..3).map(|_| a.pin_huge().unwrap()).collect();
    if !mlx::gpu_available() {
        assert!(
            mlx::active_memory() >= before + 3 * bytes,
            "three pinned copies: {before} -> {}",
            mlx::active_memory()
        );
    }
    let x = Array::full(&[2, 600], 0.25, Dtype::F32).unwrap();
    let want = ops::matmul(&x, &a).unwrap().to_f32().unwrap();
    for p in &pinned {
        assert_eq!(p.to_f32().unwrap(), values);
        assert_eq!(ops::matmul(&x, p).unwrap().to_f32().unwrap(), want);
    }
    drop(pinned);
    assert!(mlx::active_memory() < before + bytes, "pinned copies freed: {before} -> {}", mlx::active_memory());
}

/// With the scipy-openblas32 wheel beside MLX (what `make setup` installs on Linux), MLX's
/// float32 GEMM must be bound to the OpenBLAS shim, not the bundled reference BLAS.
#[test]
#[cfg(target_os = "linux")]
fn sgemm_is_routed_to_openblas_when_available() {
    let backend = mlx::blas_backend();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let have_openblas = std::fs::read_dir(root.join(".venv/lib"))
        .map(|d| d.flatten().any(|e| e.path().join("site-packages/scipy_openblas32").is_dir()))
        .unwrap_or(false);
    if have_openblas && std::env::var_os("MLX_DIR").is_none() {
        assert!(backend.contains("libzeta_cblas"), "cblas_sgemm comes from {backend}");
    }
}

/// On a CPU with AVX-512, the shim's OpenBLAS runs its AVX-512 kernels, even where the
/// environment names narrower ones for every program (this machine sets OPENBLAS_CORETYPE=Haswell:
/// prefill 1.4x slower), unless ZETA_OPENBLAS_CORETYPE chooses; and the process's environment is
/// the one it started with, so that the processes it starts inherit that.
#[test]
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn openblas_takes_its_avx512_kernels_where_the_cpu_has_them() {
    let backend = mlx::blas_backend();
    if !backend.contains("libzeta_cblas") || std::env::var_os("ZETA_OPENBLAS_CORETYPE").is_some() {
        return;
    }
    assert!(backend.contains("OpenBLAS"), "the shim names OpenBLAS's configuration: {backend}");
    let avx512 = std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512cd");
    if avx512 {
        assert!(backend.contains("SkylakeX"), "OpenBLAS kept narrower kernels: {backend}");
    }
    let at_start = std::fs::read("/proc/self/environ").unwrap();
    let inherited = at_start
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"OPENBLAS_CORETYPE=".as_slice()))
        .map(|v| String::from_utf8_lossy(v).into_owned());
    assert_eq!(std::env::var("OPENBLAS_CORETYPE").ok(), inherited, "the inherited OPENBLAS_CORETYPE is put back");
}

/// The CPU kernels run on the widest vector instructions the CPU has (AVX-512 with VNNI here; on
/// arm64 the int8 dot product where the core has it, which the 4-bit one- and two-row products
/// are built on), and `ZETA_CPU_ISA` narrows them.
#[test]
fn cpu_kernels_take_the_widest_instructions_the_cpu_has() {
    let chosen = mlx::cpu_kernels();
    let narrowed = std::env::var("ZETA_CPU_ISA").unwrap_or_default();
    #[cfg(target_arch = "x86_64")]
    let widest = {
        use std::arch::is_x86_feature_detected as has;
        if !(has!("avx2") && has!("fma") && has!("f16c")) {
            "portable"
        } else if !has!("avx512f") {
            "avx2"
        } else if has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
            "avx512-vnni"
        } else {
            "avx512"
        }
    };
    #[cfg(target_arch = "aarch64")]
    let widest = if std::arch::is_aarch64_feature_detected!("dotprod") { "neon-dotprod" } else { "neon" };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let widest = "portable";
    let want = match narrowed.as_str() {
        "portable" => "portable",
        "avx2" if widest.starts_with("avx") => "avx2",
        "neon" if widest.starts_with("neon") => "neon",
        _ => widest,
    };
    assert_eq!(chosen, want, "ZETA_CPU_ISA={narrowed:?}");
}
