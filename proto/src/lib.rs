//! zeta-mlx's public gRPC API, package `zeta.mlx.v1`, and what every binary needs to reach it.
//!
//! The `.proto` files under `zeta/mlx/v1/` are the versioned interface local tools program
//! against; this crate compiles them (with protox, no system `protoc`) into tonic clients and
//! servers. It also owns the one socket-path resolver and the Unix-socket connector shared by the
//! daemon, the gateway and the `zeta` CLI, so all three agree on where the daemon listens, and the
//! log subscriber of the daemon and the gateway (`logging`).

pub mod edge;
pub mod logging;
pub mod socket;

/// Generated types and services of `zeta.mlx.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("zeta.mlx.v1");
}

/// The encoded descriptor set of `zeta.mlx.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/zeta_mlx_v1_descriptor.bin"));

/// Most bytes of one gRPC message either way: long prompts and long answers fit.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
