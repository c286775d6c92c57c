//! The mlxk library without MLX: resolve, probe, policy, records, report, system sampling.
//! Everything here builds and tests without libmlx, so probe/gate/memmon/memplot/report-*
//! stay light.
pub mod cli;
pub mod ct2;
pub mod gguf;
pub mod gpu;
pub mod monitor;
pub mod policy;
pub mod probe;
pub mod records;
pub mod report;
pub mod resolve;
pub mod runner;
pub mod safetensors;
pub mod sys;
pub mod table;
pub mod timeline;
