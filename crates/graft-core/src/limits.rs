//! Sizes graft accepts from files and configs before it allocates anything.
//!
//! A size read from a file (a tensor's shape, a `.npy` header, a config's `in_chans`, an image's
//! dimensions) is a claim, not a fact: checked against the file's bytes where it has them, and
//! against these bounds and the memory the machine has, it becomes an error naming the file and
//! key instead of an allocation that aborts the process.

use crate::{Error, Result};

/// Classes a head may have: ImageNet-22k has 21,843, the largest vocabularies a few 100,000.
pub const MAX_CLASSES: usize = 1 << 20;
/// Input channels a model may take (RGB 3, multispectral tens, hyperspectral a few hundred).
pub const MAX_IN_CHANS: usize = 4096;
/// A side of a model's input size (timm's largest pretrained input is 1,024; 16,384 leaves room
/// for whole-slide tiles).
pub const MAX_INPUT_SIDE: usize = 16_384;
/// Pixels an image file may decode to unless configured: PIL's `Image.MAX_IMAGE_PIXELS`
/// (≈ 89.5 M, a 0.25 GiB RGB image), past which PIL refuses a file as a decompression bomb.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 89_478_485;
/// The environment variable that overrides [`DEFAULT_MAX_IMAGE_PIXELS`] (0: no bound).
pub const MAX_IMAGE_PIXELS_ENV: &str = "GRAFT_MAX_IMAGE_PIXELS";

/// The pixel bound for decoded images: `GRAFT_MAX_IMAGE_PIXELS` when set (0 turns the bound
/// off, as `Image.MAX_IMAGE_PIXELS = None` does in PIL), else PIL's default.
pub fn max_image_pixels() -> Result<Option<u64>> {
    match std::env::var(MAX_IMAGE_PIXELS_ENV) {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(Error::invalid(
                "limits",
                format!("{MAX_IMAGE_PIXELS_ENV}={v:?}: not a pixel count (0 for no bound)"),
            )),
        },
        Err(_) => Ok(Some(DEFAULT_MAX_IMAGE_PIXELS)),
    }
}

/// Bytes of memory available to this process now (Linux: `MemAvailable` in /proc/meminfo);
/// `None` where it cannot be read.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Bytes as people read them (`1.5 GiB`).
pub fn human_bytes(b: u128) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Checks that `bytes` (computed with overflow-checked arithmetic: `None` means it overflowed)
/// can be allocated: within the machine's available memory (or 1 TiB where that is unknown).
/// `what` names the thing and where its size came from.
pub fn check_alloc(what: &str, bytes: Option<u128>) -> Result<()> {
    let limit = available_memory().map_or(1u128 << 40, u128::from);
    match bytes {
        Some(b) if b <= limit => Ok(()),
        Some(b) => Err(Error::invalid(
            "memory",
            format!(
                "{what} needs {}, more than the {} available",
                human_bytes(b),
                human_bytes(limit)
            ),
        )),
        None => Err(Error::invalid(
            "memory",
            format!("{what}: its size overflows"),
        )),
    }
}

/// The element count of `shape`, `None` on overflow.
pub fn numel(shape: &[usize]) -> Option<u128> {
    shape
        .iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_past_memory_or_overflowing_are_errors() {
        assert!(check_alloc("x", Some(1024)).is_ok());
        let e = check_alloc(
            "fc.weight [2^40, 512] of w.safetensors",
            numel(&[1 << 40, 512]).map(|n| n * 4),
        )
        .expect_err("too big");
        assert!(
            e.to_string().contains("fc.weight") && e.to_string().contains("PiB"),
            "{e}"
        );
        assert!(numel(&[usize::MAX, usize::MAX, 4]).is_none());
        assert!(
            check_alloc("y", None)
                .expect_err("overflow")
                .to_string()
                .contains("overflows")
        );
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
