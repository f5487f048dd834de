//! Value checks run while the experiment file is parsed (`#[serde(deserialize_with)]`): a value
//! out of range is an error at its own line and column, before any work, like a wrong type.

use serde::Deserialize;
use serde::de::{Deserializer, Error};

fn count<'de, D: Deserializer<'de>>(d: D, min: usize, max: usize) -> Result<usize, D::Error> {
    let v = usize::deserialize(d)?;
    if v < min || v > max {
        return Err(D::Error::custom(if max == usize::MAX {
            format!("{v}: must be at least {min}")
        } else {
            format!("{v}: must be {min} to {max}")
        }));
    }
    Ok(v)
}

/// A count of at least 1 (epochs, batch size, k-shot, k).
pub fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    count(d, 1, usize::MAX)
}

/// [`at_least_one`], optional.
pub fn opt_at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    at_least_one(d).map(Some)
}

/// A head size: 1 to graft's class bound.
pub fn opt_classes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    count(d, 1, graft_core::limits::MAX_CLASSES).map(Some)
}

/// Input channels: 1 to graft's bound.
pub fn opt_in_chans<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    count(d, 1, graft_core::limits::MAX_IN_CHANS).map(Some)
}

/// An image side: 1 to graft's bound.
pub fn opt_side<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    count(d, 1, graft_core::limits::MAX_INPUT_SIDE).map(Some)
}

/// Widths of hidden layers, each at least 1.
pub fn widths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
    let v = Vec::<usize>::deserialize(d)?;
    if let Some(w) = v
        .iter()
        .find(|&&w| w == 0 || w > graft_core::limits::MAX_CLASSES)
    {
        return Err(D::Error::custom(format!(
            "hidden width {w}: must be 1 to {}",
            graft_core::limits::MAX_CLASSES
        )));
    }
    Ok(v)
}

fn real<'de, D: Deserializer<'de>>(
    d: D,
    ok: impl Fn(f64) -> bool,
    what: &str,
) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(v.is_finite() && ok(v)) {
        return Err(D::Error::custom(format!("{v}: must be {what}")));
    }
    Ok(v)
}

/// A finite number > 0 (learning rates, multipliers, an L2 penalty, a clipping norm).
pub fn opt_positive<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    real(d, |v| v > 0.0, "finite and > 0").map(Some)
}

/// [`opt_positive`], not optional.
pub fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    real(d, |v| v > 0.0, "finite and > 0")
}

/// A finite number >= 0 (weight decay, a tolerance).
pub fn non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    real(d, |v| v >= 0.0, "finite and >= 0")
}

/// [`non_negative`], optional.
pub fn opt_non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    non_negative(d).map(Some)
}

/// A fraction in [0, 1) (label smoothing, dropout, an EMA decay).
pub fn unit<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    real(d, |v| (0.0..1.0).contains(&v), "in [0, 1)")
}

/// [`unit`], optional.
pub fn opt_unit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    unit(d).map(Some)
}

/// A run directory's name: one path component, so a run stays under `output.dir`.
pub fn opt_run_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = String::deserialize(d)?;
    let p = std::path::Path::new(&v);
    let mut parts = p.components();
    let one = matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    );
    if !one || v.contains(['/', '\\']) {
        return Err(D::Error::custom(format!(
            "{v:?}: a run name is one directory name (no '/', '..' or absolute path); output.dir says where runs go"
        )));
    }
    Ok(Some(v))
}
