//! Compiles the `.proto` files with protox (pure Rust): no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/isms.proto",
        "proto/network.proto",
        "proto/data.proto",
        "proto/record.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    // Kept for those that read the services' shape at run time (the permission matrix
    // test today; gRPC reflection later).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("isms_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Shared, not copied, when a batch is decoded (see `Batch` in isms.proto).
        .bytes(".isms.v1.Batch.envelopes")
        // Rule values are slices of the frame they came in (see `Rule` in isms.proto).
        .bytes(".isms.v1.Rule.value")
        .compile_fds(fds)?;
    Ok(())
}
