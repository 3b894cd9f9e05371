//! Generates the etcd KV client from `proto/etcd_kv.proto` without a system
//! `protoc`: protox compiles the file in Rust and tonic-prost-build generates
//! from the descriptor set, as the main crate's build.rs does. Only the client is
//! generated: the bench never serves etcd's API.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/etcd_kv.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
