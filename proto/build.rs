//! Compiles `zeta/mlx/v1/*.proto` with protox (pure Rust, no system `protoc`) and generates the
//! tonic clients and servers, plus the encoded descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["zeta/mlx/v1/generate.proto", "zeta/mlx/v1/models.proto", "zeta/mlx/v1/daemon.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("zeta_mlx_v1_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
