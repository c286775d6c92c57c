//! GPU utilisation where a GPU can be read: NVIDIA through NVML (cargo feature `nvml`, the
//! library is loaded at run time), Apple silicon through `ioreg` (no sudo). Elsewhere there is
//! no reading and samples carry no GPU fields.

/// One GPU reading (percentages 0–100).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReading {
    pub util: Option<f64>,
    pub renderer_util: Option<f64>,
    pub tiler_util: Option<f64>,
    pub mem_used_mb: Option<f64>,
}

pub enum GpuSource {
    None,
    #[cfg(feature = "nvml")]
    Nvml(nvml_wrapper::Nvml),
    #[cfg(target_os = "macos")]
    Ioreg,
}

impl GpuSource {
    /// The first source that answers on this machine.
    pub fn detect() -> Self {
        #[cfg(feature = "nvml")]
        if let Ok(n) = nvml_wrapper::Nvml::init() {
            if n.device_count().is_ok_and(|c| c > 0) {
                return GpuSource::Nvml(n);
            }
        }
        #[cfg(target_os = "macos")]
        if read_ioreg().is_some() {
            return GpuSource::Ioreg;
        }
        GpuSource::None
    }

    pub fn read(&self) -> Option<GpuReading> {
        match self {
            GpuSource::None => None,
            #[cfg(feature = "nvml")]
            GpuSource::Nvml(n) => {
                let d = n.device_by_index(0).ok()?;
                let util = d.utilization_rates().ok().map(|u| u.gpu as f64);
                let mem = d.memory_info().ok().map(|m| m.used as f64 / 1e6);
                Some(GpuReading {
                    util,
                    mem_used_mb: mem,
                    ..Default::default()
                })
            }
            #[cfg(target_os = "macos")]
            GpuSource::Ioreg => read_ioreg(),
        }
    }
}

#[cfg(target_os = "macos")]
fn read_ioreg() -> Option<GpuReading> {
    let out = std::process::Command::new("ioreg")
        .args(["-r", "-d", "1", "-w", "0", "-c", "IOAccelerator"])
        .output()
        .ok()?;
    parse_ioreg(&String::from_utf8_lossy(&out.stdout))
}

/// `ioreg -c IOAccelerator` → the PerformanceStatistics utilisation percentages.
pub fn parse_ioreg(text: &str) -> Option<GpuReading> {
    let field = |key: &str| -> Option<f64> {
        let rest = text.split(&format!("\"{key}\"=")).nth(1)?;
        let num: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        num.parse().ok()
    };
    let r = GpuReading {
        util: field("Device Utilization %"),
        renderer_util: field("Renderer Utilization %"),
        tiler_util: field("Tiler Utilization %"),
        mem_used_mb: field("In use system memory").map(|b| b / 1e6),
    };
    r.util.map(|_| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioreg_performance_statistics() {
        let t = r#"| "PerformanceStatistics" = {"In use system memory"=1048576000,"Device Utilization %"=37,"Tiler Utilization %"=4,"Renderer Utilization %"=35}"#;
        let r = parse_ioreg(t).unwrap();
        assert_eq!(
            (r.util, r.renderer_util, r.tiler_util),
            (Some(37.0), Some(35.0), Some(4.0))
        );
        assert_eq!(r.mem_used_mb, Some(1048.576));
        assert_eq!(parse_ioreg("nothing here"), None);
    }

    #[test]
    fn no_gpu_here_means_no_reading() {
        // These machines have no GPU: detection must find none rather than report zeros.
        if std::path::Path::new("/dev/nvidia0").exists() {
            return;
        }
        assert!(GpuSource::detect().read().is_none());
    }
}
