//! Link settings of the p2 components (wasm32 builds without the `p3`
//! feature): the guest's shadow stack is 128 KiB instead of the 1 MiB that
//! rustc asks wasm-ld for by default.
//!
//! The stack sits at the bottom of linear memory (below the data), so its
//! size is part of every instance's accessible memory. Spin resets a freed
//! instance slot by writing the first `SPIN_WASMTIME_LINEAR_MEMORY_KEEP_RESIDENT`
//! bytes (2 MiB by default) instead of releasing them, so with 1 MiB of stack
//! every slot a stream ever used kept ~1.4 MiB resident after the stream
//! closed; with 128 KiB it keeps ~0.5 MiB (docs/PERFORMANCE.md, "Where a p2
//! stream's memory goes"). Only touched pages cost anything while a stream
//! is open, on either host.
//!
//! The deepest guest path measured is a stored result nested to
//! serde_json's recursion limit (128), parsed, serialized and dropped: it
//! trapped with a 32 KiB stack and ran with 64 KiB. An overflow is a trap
//! (out-of-bounds access below address 0), never silent corruption.
//! The p3 build keeps the default (one instance serves many streams).

const P2_STACK_BYTES: u32 = 128 * 1024;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "wasm32");
    let p3 = std::env::var_os("CARGO_FEATURE_P3").is_some();
    if wasm && !p3 {
        println!("cargo:rustc-link-arg-cdylib=-zstack-size={P2_STACK_BYTES}");
    }
}
