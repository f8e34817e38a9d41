//! Compiles `agentmesh/v1/*.proto` with protox (pure Rust, no protoc needed),
//! writes the descriptor set used by server reflection, and generates the
//! prost messages and tonic services.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "agentmesh/v1/errors.proto",
    "agentmesh/v1/content.proto",
    "agentmesh/v1/agent.proto",
    "agentmesh/v1/orchestrator.proto",
    "agentmesh/v1/registry.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build does not emit rerun-if-changed for protox input.
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("agentmesh_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::LeanCodec")
        .compile_fds(fds)?;
    Ok(())
}
