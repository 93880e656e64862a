//! Hardware detection from `/proc` and `/dev` (Linux), turned into capability labels that
//! `requires` is matched against.
//!
//! Labels: the OS (`linux`), the architecture as GitHub runner labels spell it (`x64`,
//! `arm64`), CPU features (`avx2`, `avx512`), accelerators (`cuda` when an NVIDIA device or
//! driver is present, `rocm` for `/dev/kfd`), `large-memory` at 32 GiB or more, plus whatever
//! the operator adds with `p2p.capabilities`.

use std::path::Path;

use super::command::{Accelerator, HardwareReport};

/// Inputs of [`labels`], read from the machine by [`detect`].
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// `/proc/cpuinfo` text.
    pub cpuinfo: String,
    /// `/proc/meminfo` text.
    pub meminfo: String,
    /// NVIDIA driver version text, if present.
    pub nvidia: Option<String>,
    /// Whether `/dev/kfd` (AMD ROCm) exists.
    pub kfd: bool,
    /// Logical cores.
    pub cores: usize,
    /// `std::env::consts::ARCH`.
    pub arch: &'static str,
    /// `std::env::consts::OS`.
    pub os: &'static str,
}

/// Read the probe inputs from this machine.
pub fn probe() -> Probe {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let nvidia = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .or_else(|| {
            Path::new("/dev/nvidia0")
                .exists()
                .then(|| "NVIDIA GPU".into())
        });
    Probe {
        cpuinfo: read("/proc/cpuinfo"),
        meminfo: read("/proc/meminfo"),
        nvidia,
        kfd: Path::new("/dev/kfd").exists(),
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        arch: std::env::consts::ARCH,
        os: std::env::consts::OS,
    }
}

/// Turn a probe into a report with capability labels (pure). `extra` labels are appended.
pub fn labels(p: &Probe, extra: &[String]) -> HardwareReport {
    let arch = match p.arch {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
    .to_string();
    let cpu_model = p
        .cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name" || k.trim() == "Model").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let flags: Vec<&str> = p
        .cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "flags" || k.trim() == "Features").then_some(v)
        })
        .map(|v| v.split_whitespace().collect())
        .unwrap_or_default();
    let memory_mb = p
        .meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .unwrap_or(0);
    let mut accelerators = Vec::new();
    let mut caps = vec![p.os.to_string(), arch.clone(), "cpu".to_string()];
    if flags.contains(&"avx2") {
        caps.push("avx2".into());
    }
    if flags.contains(&"avx512f") {
        caps.push("avx512".into());
    }
    if flags.contains(&"asimd") || flags.contains(&"neon") {
        caps.push("neon".into());
    }
    if let Some(n) = &p.nvidia {
        caps.push("cuda".into());
        caps.push("gpu".into());
        accelerators.push(Accelerator {
            vendor: "nvidia".into(),
            name: n.lines().next().unwrap_or("NVIDIA GPU").trim().to_string(),
        });
    }
    if p.kfd {
        caps.push("rocm".into());
        if !caps.iter().any(|c| c == "gpu") {
            caps.push("gpu".into());
        }
        accelerators.push(Accelerator {
            vendor: "amd".into(),
            name: "ROCm device (/dev/kfd)".into(),
        });
    }
    if memory_mb >= 32 * 1024 {
        caps.push("large-memory".into());
    }
    for e in extra {
        if !caps.contains(e) {
            caps.push(e.clone());
        }
    }
    HardwareReport {
        os: p.os.to_string(),
        arch,
        cpu_model,
        cores: p.cores,
        memory_mb,
        accelerators,
        capabilities: caps,
    }
}

/// Detect this machine's hardware and labels.
pub fn detect(extra: &[String]) -> HardwareReport {
    labels(&probe(), extra)
}

/// The host's 1-minute load average (`/proc/loadavg`).
pub fn load_avg_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_probe() {
        let p = Probe {
            cpuinfo: "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 avx512f\n"
                .into(),
            meminfo: "MemTotal:       49283072 kB\n".into(),
            nvidia: Some("NVRM version: 550.1\n".into()),
            kfd: false,
            cores: 8,
            arch: "x86_64",
            os: "linux",
        };
        let r = labels(&p, &["fast-network".into(), "cuda".into()]);
        assert_eq!(r.arch, "x64");
        assert_eq!(r.cpu_model, "AMD EPYC");
        assert_eq!(r.memory_mb, 48128);
        assert_eq!(
            r.capabilities,
            [
                "linux",
                "x64",
                "cpu",
                "avx2",
                "avx512",
                "cuda",
                "gpu",
                "large-memory",
                "fast-network"
            ]
        );
        assert_eq!(r.accelerators[0].vendor, "nvidia");
    }

    #[test]
    fn empty_probe_does_not_panic() {
        let r = labels(&Probe::default(), &[]);
        assert_eq!(r.memory_mb, 0);
        assert_eq!(r.cpu_model, "unknown");
    }

    #[test]
    fn this_machine() {
        let r = detect(&[]);
        assert!(r.cores >= 1);
        assert!(r.capabilities.contains(&"cpu".to_string()));
    }
}
