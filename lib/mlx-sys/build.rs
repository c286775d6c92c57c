//! Builds the `mlx-sys` replacement: compiles mlx-c against a *prebuilt* MLX taken from its
//! PyPI wheel (`scripts/bootstrap` unpacks it) instead of building MLX from source.
//!
//! Inputs (environment, defaults in `.cargo/config.toml`):
//! - `MLX_DIR`: an unpacked MLX wheel (`mlx/lib/libmlx.{so,dylib}`, `mlx/include`).
//! - `MLX_C_DIR`: the mlx-c source tree shipped inside the published mlx-sys 0.7.0 crate.
//! - `MLXK_BLAS`: `openblas` (default on Linux) or `bundled` (the wheel's reference BLAS, ~60×
//!   slower matmul; only for machines without OpenBLAS, and then on purpose).
//!
//! Outputs for dependants (`DEP_MLX_*`): `LIBDIR` (where libmlx lives) and `LINK_ARGS`
//! (tab-separated linker arguments every final executable needs: rpath, OpenBLAS first).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    for var in ["MLX_DIR", "MLX_C_DIR", "MLXK_BLAS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let mlx_dir = required_dir("MLX_DIR", "mlx/include");
    let mlx_c_src = required_dir("MLX_C_DIR", "mlx/c");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();

    let lib_dir = mlx_dir.join("mlx").join("lib");
    let include_dir = mlx_dir.join("mlx").join("include");
    let lib_name = if target_os == "macos" {
        "libmlx.dylib"
    } else {
        "libmlx.so"
    };
    if !lib_dir.join(lib_name).is_file() {
        fail(&format!(
            "{} has no {lib_name}: MLX_DIR must point at an unpacked MLX wheel; run scripts/bootstrap",
            lib_dir.display()
        ));
    }

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mlx_c = out.join("mlx-c");
    copy_patched_sources(&mlx_c_src, &mlx_c);

    compile_mlx_c(&mlx_c, &include_dir);
    generate_bindings(&mlx_c, &out);

    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    println!("cargo:libdir={}", lib_dir.display());

    // The build's own MLX first; then where `make install` puts it beside the binaries
    // (PREFIX/lib/mlxk/mlx/lib, in the wheel's layout), so an installed copy outlives `.deps`.
    let mut link_args = vec![
        format!("-Wl,-rpath,{}", lib_dir.display()),
        "-Wl,-rpath,$ORIGIN/../lib/mlxk/mlx/lib".to_string(),
    ];
    if target_os == "linux" {
        match env::var("MLXK_BLAS").as_deref() {
            Ok("bundled") => println!(
                "cargo:warning=MLXK_BLAS=bundled: MLX uses the wheel's reference BLAS (slow matmul)"
            ),
            Ok("openblas") | Err(_) => {
                if !openblas_present() {
                    fail(
                        "libopenblas.so.0 not found: install libopenblas0-pthread (scripts/bootstrap does), \
                         or set MLXK_BLAS=bundled to accept ~60x slower matmul",
                    );
                }
                // Loaded ahead of libmlx's bundled reference BLAS, so its sgemm wins symbol lookup.
                link_args.push("-Wl,--no-as-needed,-l:libopenblas.so.0,--as-needed".to_string());
            }
            Ok(other) => fail(&format!("MLXK_BLAS={other}: expected openblas or bundled")),
        }
    }
    for arg in &link_args {
        // The sys crate's own tests are executables too.
        println!("cargo:rustc-link-arg={arg}");
    }
    println!("cargo:link_args={}", link_args.join("\t"));
}

fn fail(message: &str) -> ! {
    eprintln!("mlx-sys: {message}");
    panic!("mlx-sys: {message}");
}

fn required_dir(var: &str, must_contain: &str) -> PathBuf {
    let Some(value) = env::var_os(var) else {
        fail(&format!(
            "{var} is not set; run scripts/bootstrap (it fills .deps/)"
        ));
    };
    let dir = PathBuf::from(value);
    if !dir.join(must_contain).exists() {
        fail(&format!(
            "{var}={} has no {must_contain}; run scripts/bootstrap",
            dir.display()
        ));
    }
    dir
}

fn openblas_present() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ]
    .iter()
    .any(|d| Path::new(d).join("libopenblas.so.0").exists())
}

/// Copies mlx-c's `mlx/c` tree into OUT_DIR and applies the two fixes gcc 12 on x86 needs.
fn copy_patched_sources(src_root: &Path, dst_root: &Path) {
    let src = src_root.join("mlx").join("c");
    let dst = dst_root.join("mlx").join("c");
    copy_tree(&src, &dst);
    println!("cargo:rerun-if-changed={}", src.display());

    // gcc 12 has no <format>: route std::format through a small {}-substituting shim.
    let io_h = dst.join("private").join("io.h");
    let text = read(&io_h);
    if text.contains("std::format(") {
        let shim = r#"#include <sstream>
#include <string>
namespace mlxk_fmt {
inline void put(std::ostringstream& os, const char* f) { os << f; }
template <class T, class... R>
void put(std::ostringstream& os, const char* f, const T& v, const R&... rest) {
  for (; *f; ++f) {
    if (f[0] == '{' && f[1] == '}') { os << v; put(os, f + 2, rest...); return; }
    os << *f;
  }
}
template <class... A>
std::string format(const char* f, const A&... a) { std::ostringstream os; put(os, f, a...); return os.str(); }
} // namespace mlxk_fmt
"#;
        let patched = text
            .replacen(
                "#include <iostream>",
                &format!("{shim}#include <iostream>"),
                1,
            )
            .replace("std::format(", "mlxk_fmt::format(");
        write(&io_h, &patched);
    }

    // half.h declares float16_t/bfloat16_t only on ARM; mlx-rs needs them everywhere.
    // clang (bindgen) takes __fp16 as a storage type on every target and emits the
    // __BindgenFloat16 newtype mlx-rs expects; gcc compiling mlx-c stores the bits in uint16_t.
    let half_h = dst.join("half.h");
    let text = read(&half_h);
    let x86 = r#"
#if !defined(__ARM_FEATURE_FP16_SCALAR_ARITHMETIC) && !defined(__aarch64__)
#include <stdint.h>
#define HAS_FLOAT16
#define HAS_BFLOAT16
#if defined(__clang__)
typedef __fp16 float16_t;
#else
typedef uint16_t float16_t;
#endif
typedef uint16_t bfloat16_t;
#endif
"#;
    if !text.contains("typedef uint16_t bfloat16_t") {
        let patched = text.replacen(
            "#ifdef __cplusplus\n}",
            &format!("{x86}\n#ifdef __cplusplus\n}}"),
            1,
        );
        if patched == text {
            fail("mlx-c half.h has an unexpected shape; cannot apply the x86 float16 fix");
        }
        write(&half_h, &patched);
    }
}

fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap_or_else(|e| fail(&format!("create {}: {e}", dst.display())));
    let entries =
        fs::read_dir(src).unwrap_or_else(|e| fail(&format!("read {}: {e}", src.display())));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| fail(&format!("read {}: {e}", src.display())));
        let path = entry.path();
        let target = dst.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            let new =
                fs::read(&path).unwrap_or_else(|e| fail(&format!("read {}: {e}", path.display())));
            // Only rewrite changed files so cc does not recompile everything each time.
            if fs::read(&target).ok().as_deref() != Some(&new[..]) {
                fs::write(&target, new)
                    .unwrap_or_else(|e| fail(&format!("write {}: {e}", target.display())));
            }
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| fail(&format!("read {}: {e}", path.display())))
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| fail(&format!("write {}: {e}", path.display())));
}

fn sources(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| fail(&format!("read {}: {e}", dir.display())))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

fn compile_mlx_c(mlx_c: &Path, mlx_include: &Path) {
    let files = sources(&mlx_c.join("mlx").join("c"), "cpp");
    if files.is_empty() {
        fail("no mlx-c sources found");
    }
    cc::Build::new()
        .cpp(true)
        .std("c++20")
        .files(&files)
        .include(mlx_c)
        .include(mlx_include)
        .warnings(false)
        .flag_if_supported("-w")
        .compile("mlxc");
}

fn generate_bindings(mlx_c: &Path, out: &Path) {
    let headers = sources(&mlx_c.join("mlx").join("c"), "h");
    let builder = bindgen::Builder::default()
        .rust_target("1.73.0".parse().expect("a valid rust target"))
        .clang_arg(format!("-I{}", mlx_c.display()))
        // Same allow/block lists as upstream mlx-sys, so mlx-rs compiles unchanged.
        .blocklist_function("malloc")
        .blocklist_function("realloc");
    let builder = headers
        .iter()
        .fold(builder, |b, h| b.header(h.to_string_lossy()));
    builder
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen over mlx-c headers: {e}")))
        .write_to_file(out.join("bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("write bindings: {e}")));
}
