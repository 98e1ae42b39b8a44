//! Compiles the protobuf schemas: node-to-node `cluster.proto` and leader-to-agent `agent.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/cluster.proto");
    println!("cargo:rerun-if-changed=proto/agent.proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/cluster.proto", "proto/agent.proto"], &["proto"])?;
    Ok(())
}
