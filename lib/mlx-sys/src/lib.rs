//! Raw bindings to mlx-c, linked against a prebuilt MLX (see `build.rs`).
//! This crate stands in for the crates.io `mlx-sys` through `[patch.crates-io]`.
#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// libmlx.so references this macOS clock from a code path that never runs on Linux; the
/// executable must still define it for the dynamic linker. Monotonic nanoseconds, as on macOS.
#[cfg(not(target_os = "macos"))]
#[unsafe(no_mangle)]
pub extern "C" fn mach_approximate_time() -> u64 {
    let mut ts = libc_timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own; CLOCK_MONOTONIC always exists on Linux.
    unsafe { clock_gettime(1, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(not(target_os = "macos"))]
#[repr(C)]
struct libc_timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

#[cfg(not(target_os = "macos"))]
unsafe extern "C" {
    fn clock_gettime(clock_id: i32, tp: *mut libc_timespec) -> i32;
}
