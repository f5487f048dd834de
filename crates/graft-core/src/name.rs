//! Dotted parameter names: `layer1.0.conv1.weight`, exactly the PyTorch `state_dict` keys.
//!
//! A name is a non-empty list of segments joined by `.`; a segment is non-empty and made of ASCII
//! letters, digits, `_` and `-`. Prefix tests are on segment boundaries: `layer1` is a prefix of
//! `layer1.0.conv1.weight` but not of `layer10.weight`.

use crate::{Error, Result};

/// Checks that `name` is a valid dotted name.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidName {
            name: name.to_string(),
            why: why.to_string(),
        })
    };
    if name.is_empty() {
        return bad("empty name");
    }
    for seg in name.split('.') {
        if seg.is_empty() {
            return bad("empty segment (leading, trailing or doubled '.')");
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return bad(&format!(
                "character {c:?} is not allowed (use letters, digits, '_', '-')"
            ));
        }
    }
    Ok(())
}

/// Joins a prefix and a (possibly dotted) suffix; an empty prefix yields the suffix.
pub fn join(prefix: &str, suffix: &str) -> String {
    match (prefix.is_empty(), suffix.is_empty()) {
        (true, _) => suffix.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{suffix}"),
    }
}

/// Splits off the last segment: `("layer1.0", "bn1")` for `layer1.0.bn1`, `("", "fc")` for `fc`.
pub fn split_last(name: &str) -> (&str, &str) {
    match name.rsplit_once('.') {
        Some((parent, last)) => (parent, last),
        None => ("", name),
    }
}

/// True when `name` equals `prefix` or lies under it on a segment boundary. The empty prefix is the
/// root and contains every name.
pub fn is_under(name: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    match name.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('.'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_names() {
        assert!(validate_name("layer1.0.conv1.weight").is_ok());
        assert!(validate_name("blocks.11.attn.qkv.bias").is_ok());
        for bad in ["", ".a", "a.", "a..b", "a b", "a/b"] {
            let err = validate_name(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn prefix_is_on_segment_boundaries() {
        assert!(is_under("layer1.0.conv1.weight", "layer1"));
        assert!(is_under("layer1.0.conv1.weight", "layer1.0"));
        assert!(is_under("layer1", "layer1"));
        assert!(!is_under("layer10.weight", "layer1"));
        assert!(!is_under("layer", "layer1"));
        assert!(is_under("anything", ""));
        assert_eq!(join("", "fc.weight"), "fc.weight");
        assert_eq!(join("layer1", "0.bn1"), "layer1.0.bn1");
        assert_eq!(join("layer1", ""), "layer1");
        assert_eq!(split_last("layer1.0.bn1"), ("layer1.0", "bn1"));
        assert_eq!(split_last("fc"), ("", "fc"));
    }
}
