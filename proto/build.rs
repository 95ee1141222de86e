//! Compiles `switchyard/v1/*.proto` with protox, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "switchyard/v1/config.proto",
        "switchyard/v1/usage.proto",
        "switchyard/v1/budget.proto",
    ];
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Slices of the spool's segment buffers, shipped as they are.
        .bytes(".switchyard.v1.SpooledUsageBatch.records")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=switchyard");
    Ok(())
}
