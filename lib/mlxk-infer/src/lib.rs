//! The inference core of mlxk on MLX (mlx-rs): loading, models, tokenization, generation.
pub mod audio;
pub mod config;
pub mod ct2;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod kernels;
pub mod layers;
pub mod loader;
pub mod models;
pub mod npz;
pub mod prompt_cache;
pub mod reasoning;
pub mod runner;
pub mod runtime;
pub mod sampling;
/// Tiny random models for tests and the reference scripts (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub mod tiny;
/// Tiny random vision-language models for the parity tests (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub mod tiny_vision;
/// Tiny random Whisper models for the parity tests (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub mod tiny_whisper;
pub mod tokenizer;
pub mod transcribe;
pub mod vision;
pub mod weights;

pub use mlx_rs;
