//! Embeds plotly.js for memplot's offline HTML: the file `PLOTLY_JS` names (scripts/bootstrap
//! fetches the scatter-only bundle), gzip-compressed and base64-encoded into OUT_DIR; the page
//! inflates it with the browser's DecompressionStream.
use base64::Engine;
use std::io::Write;

fn main() {
    println!("cargo:rerun-if-env-changed=PLOTLY_JS");
    let path = std::env::var("PLOTLY_JS").unwrap_or_default();
    println!("cargo:rerun-if-changed={path}");
    let js = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("memplot: cannot read plotly.js at PLOTLY_JS='{path}' ({e}); run scripts/bootstrap")
    });
    assert!(js.contains("plotly.js"), "{path} is not plotly.js");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(js.as_bytes()).expect("gzip in memory");
    let bytes = gz.finish().expect("gzip in memory");
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("plotly.min.js.gz.b64"), b64).expect("write OUT_DIR");
}
