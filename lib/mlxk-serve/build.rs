// Final executables (this crate's tests and benches) need mlx-sys's link arguments:
// the rpath to libmlx and OpenBLAS ahead of the bundled BLAS. Cargo only passes
// `DEP_MLX_*` to direct dependants, hence the direct mlx-sys dependency.
fn main() {
    let args = std::env::var("DEP_MLX_LINK_ARGS").unwrap_or_default();
    for arg in args.split('\t').filter(|a| !a.is_empty()) {
        println!("cargo:rustc-link-arg={arg}");
    }
}
