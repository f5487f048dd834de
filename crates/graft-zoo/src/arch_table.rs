//! The architectures graft's configurable builders read off timm's own models
//! (`data/archs.json`, written by `scripts/gen_archs.py`): per family, each architecture's name
//! and graft config, and the architectures left out with the reason.
//!
//! The file is compiled in; `tests/zoo_tables.rs` checks that it parses, that every entry
//! builds, and that it is what the venv's timm gives today.

use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use graft_core::{Error, Result};

use crate::cfg::PretrainedCfg;

/// One architecture of a family: its timm name and graft's config for it.
#[derive(Debug, Clone, Deserialize)]
struct Entry {
    name: String,
    config: serde_json::Value,
}

/// An architecture of a covered timm module that graft's builder does not make, and why.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct LeftOut {
    pub name: String,
    pub family: String,
    pub why: String,
}

#[derive(Debug, Deserialize)]
struct Table {
    timm_version: String,
    #[serde(flatten)]
    families: std::collections::BTreeMap<String, serde_json::Value>,
}

const FILE: &str = "data/archs.json";

fn bad(why: impl std::fmt::Display) -> Error {
    Error::invalid(FILE, why.to_string())
}

fn table() -> Result<&'static Table> {
    static TABLE: OnceLock<std::result::Result<Table, String>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            serde_json::from_str(include_str!("../data/archs.json")).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(bad)
}

/// A family's architectures with their configs, in the file's order. An entry that does not
/// parse as `T` is an error naming it.
pub(crate) fn try_entries<T: DeserializeOwned>(family: &str) -> Result<Vec<(String, T)>> {
    let t = table()?;
    let Some(list) = t.families.get(family) else {
        return Ok(Vec::new());
    };
    let list: Vec<Entry> =
        serde_json::from_value(list.clone()).map_err(|e| bad(format!("{family}: {e}")))?;
    list.into_iter()
        .map(|e| {
            serde_json::from_value(e.config)
                .map(|c| (e.name.clone(), c))
                .map_err(|err| bad(format!("{family} {}: {err}", e.name)))
        })
        .collect()
}

/// [`try_entries`] for the registry: the compiled-in file is checked by the tests, so a broken
/// one registers nothing here rather than failing every registry.
pub(crate) fn entries<T: DeserializeOwned>(family: &str) -> Vec<(String, T)> {
    try_entries(family).unwrap_or_default()
}

/// A family's architecture names, every entry's config parsed as the family's type (an entry
/// that does not parse is an error naming it).
pub fn names(family: &str) -> Result<Vec<String>> {
    let t = table()?;
    let Some(list) = t.families.get(family) else {
        return Err(bad(format!("no family {family} in the table")));
    };
    let list: Vec<Entry> =
        serde_json::from_value(list.clone()).map_err(|e| bad(format!("{family}: {e}")))?;
    list.into_iter()
        .map(|e| match crate::families::parse_config(family, e.config) {
            Some(Ok(_)) => Ok(e.name),
            Some(Err(err)) => Err(bad(format!("{family} {}: {err}", e.name))),
            None => Err(bad(format!("{family} is not one of graft's families"))),
        })
        .collect()
}

/// The architectures of the covered timm modules that graft's builders do not make, and why.
pub fn left_out() -> Result<Vec<LeftOut>> {
    let t = table()?;
    match t.families.get("out") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| bad(format!("out: {e}"))),
        None => Ok(Vec::new()),
    }
}

/// The timm version the table was read from.
pub fn timm_version() -> Result<&'static str> {
    Ok(&table()?.timm_version)
}

/// `base` with the input size, crop, normalisation and classes of the architecture's default
/// timm tag (the tag itself is not named: this is the architecture, not its weights).
pub(crate) fn with_default_tag(name: &str, base: PretrainedCfg) -> PretrainedCfg {
    match crate::pretrained::default_tag(name) {
        Ok(Some(tag)) => PretrainedCfg {
            tag: None,
            ..tag.apply(&base)
        },
        _ => base,
    }
}
