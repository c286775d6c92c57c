//! Facts about the MLX runtime this process really runs on: library version and which BLAS
//! answers MLX's matmul calls (OpenBLAS is ~60× faster than the wheel's bundled reference BLAS).

use std::ffi::CStr;

/// The version string libmlx reports, e.g. `0.32.2`.
pub fn mlx_version() -> String {
    // SAFETY: mlx_version fills an mlx_string we own; we copy it out and free it.
    unsafe {
        let mut s = mlx_sys::mlx_string_new();
        let version = if mlx_sys::mlx_version(&mut s) == 0 {
            let ptr = mlx_sys::mlx_string_data(s);
            if ptr.is_null() {
                String::from("unknown")
            } else {
                CStr::from_ptr(ptr).to_string_lossy().into_owned()
            }
        } else {
            String::from("unknown")
        };
        mlx_sys::mlx_string_free(s);
        version
    }
}

/// Which BLAS library serves MLX's CPU matmul in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blas {
    /// OpenBLAS is loaded ahead of the bundled BLAS and wins symbol lookup.
    OpenBlas(String),
    /// Only the wheel's reference BLAS is loaded.
    Bundled(String),
    /// Could not tell (no /proc on this platform, or neither library is mapped).
    Unknown,
}

impl std::fmt::Display for Blas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blas::OpenBlas(p) => write!(f, "OpenBLAS ({p})"),
            Blas::Bundled(p) => write!(f, "bundled reference BLAS ({p})"),
            Blas::Unknown => write!(f, "unknown"),
        }
    }
}

/// Asks the dynamic linker which loaded library answers `cblas_sgemm` — the symbol libmlx
/// calls for f32 matmul — exactly as libmlx's own lookup resolves it.
pub fn blas_in_use() -> Blas {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: dlsym/dladdr only read the loader's tables; the name is NUL-terminated.
        unsafe {
            let sym = libc::dlsym(libc::RTLD_DEFAULT, c"cblas_sgemm".as_ptr());
            if sym.is_null() {
                return Blas::Unknown;
            }
            let mut info: libc::Dl_info = std::mem::zeroed();
            if libc::dladdr(sym, &mut info) == 0 || info.dli_fname.is_null() {
                return Blas::Unknown;
            }
            classify_blas(&CStr::from_ptr(info.dli_fname).to_string_lossy())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Blas::Unknown
    }
}

fn classify_blas(library_path: &str) -> Blas {
    let name = library_path.rsplit('/').next().unwrap_or(library_path);
    if name.starts_with("libopenblas") {
        Blas::OpenBlas(library_path.to_string())
    } else if name.starts_with("libblas") {
        Blas::Bundled(library_path.to_string())
    } else {
        Blas::Unknown
    }
}

/// Whether MLX computes on the CPU (this build's default device; a GPU build says otherwise).
pub fn default_device_is_cpu() -> bool {
    static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CPU.get_or_init(|| {
        mlx_rs::Device::default()
            .get_type()
            .map(|t| matches!(t, mlx_rs::DeviceType::Cpu))
            .unwrap_or(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_are_classified_by_file_name() {
        let open = "/lib/x86_64-linux-gnu/libopenblas.so.0";
        assert_eq!(classify_blas(open), Blas::OpenBlas(open.into()));
        let bundled = "/x/mlx_cpu.libs/libblas-bd8a282c.so.3.10.0";
        assert_eq!(classify_blas(bundled), Blas::Bundled(bundled.into()));
        assert_eq!(classify_blas("/usr/lib/libmkl_rt.so"), Blas::Unknown);
    }

    #[test]
    fn this_test_binary_runs_openblas_and_mlx_0_32_2() {
        // Every executable links OpenBLAS first (mlx-sys build.rs) unless MLXK_BLAS=bundled.
        if std::env::var("MLXK_BLAS").as_deref() != Ok("bundled") {
            assert!(
                matches!(blas_in_use(), Blas::OpenBlas(_)),
                "{}",
                blas_in_use()
            );
        }
        assert_eq!(mlx_version(), "0.32.2");
    }
}
