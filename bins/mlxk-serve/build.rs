// The executable needs mlx-sys's link arguments: rpath to libmlx, OpenBLAS first.
fn main() {
    let args = std::env::var("DEP_MLX_LINK_ARGS").unwrap_or_default();
    for arg in args.split('\t').filter(|a| !a.is_empty()) {
        println!("cargo:rustc-link-arg={arg}");
    }
}
