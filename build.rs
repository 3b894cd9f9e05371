//! Generates the gRPC code from `proto/` without a system `protoc`: protox compiles
//! the .proto files in Rust, tonic-prost-build generates from the descriptor set, and
//! the encoded descriptor set is written to OUT_DIR for server reflection
//! (`file_descriptor_set_path` is ignored on the `compile_fds` path).

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/cache.proto", "proto/peer.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("descriptors.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .bytes(".peer")
        .compile_fds(descriptors)?;
    Ok(())
}
