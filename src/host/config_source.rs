//! Where configuration comes from: the only code that differs between the
//! Spin build (default) and the portable build (`--features portable`).

use crate::config::{Config, ConfigError};

/// Spin application variables (`spin.toml`, `SPIN_VARIABLE_*`, runtime config).
#[cfg(not(feature = "portable"))]
pub fn load() -> Result<Config, ConfigError> {
    Config::load(&crate::config::Source(|name: &str| {
        variables::fermyon::spin::variables::get(name).ok()
    }))
}

/// `fermyon:spin/variables@2.0.0` (what spin-sdk 5's `variables::get`
/// called), bound from `wit/`.
#[cfg(not(feature = "portable"))]
mod variables {
    wit_bindgen::generate!({
        path: "wit",
        world: "sse-gateway:component/spin-variables",
        generate_all,
    });
}

/// WASI environment variables, upper-cased (`wasmtime serve --env REDIS_URL=...`).
#[cfg(feature = "portable")]
pub fn load() -> Result<Config, ConfigError> {
    Config::from_env(&wasi::cli::environment::get_environment())
}
