//! The inference core of mlxk on MLX (mlx-rs): loading, models, tokenization, generation.
pub mod runtime;

pub use mlx_rs;
