//! The mlxk library without MLX: resolve, probe, policy, records, report, system sampling.
//! Everything here builds and tests without libmlx, so probe/gate/memmon/memplot/report-*
//! stay light.
pub mod cli;
