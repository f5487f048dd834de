//! The architecture table (`crates/graft-zoo/data/archs.json`) against the venv's timm: it is
//! what `scripts/gen_archs.py` reads off timm's models today (a stale table fails here), every
//! entry parses as its family's config, and every entry is a registered built-in.

mod common;

use std::collections::BTreeSet;

use graft::zoo::{Registry, arch_table};

#[test]
fn the_arch_table_is_what_timm_builds() {
    let out = common::temp_dir("arch-table").join("archs.json");
    common::run_python_script("scripts/gen_archs.py", &[out.to_str().expect("utf-8 path")]);
    let fresh: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("fresh table")).expect("json");
    let shipped: serde_json::Value =
        serde_json::from_str(include_str!("../crates/graft-zoo/data/archs.json")).expect("json");
    assert!(
        fresh == shipped,
        "crates/graft-zoo/data/archs.json is stale: re-run scripts/gen_archs.py, then scripts/gen_pretrained.py"
    );

    let vit = arch_table::names("vit").expect("every ViT entry parses");
    assert!(vit.len() >= 100, "{} ViT architectures", vit.len());
    let reg = Registry::builtin();
    let registered: BTreeSet<&str> = reg.list(None).iter().map(|e| e.name.as_str()).collect();
    for family in ["resnet", "vit", "convnext", "mbconv", "swin"] {
        let names = arch_table::names(family).expect("every entry parses");
        assert!(!names.is_empty(), "no {family} architectures in the table");
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !registered.contains(n.as_str()))
            .collect();
        assert!(missing.is_empty(), "{family}: not registered: {missing:?}");
    }
    let out = arch_table::left_out().expect("left-out list");
    assert!(
        out.iter()
            .all(|o| !o.why.is_empty() && !registered.contains(o.name.as_str()))
    );
    assert_eq!(
        arch_table::timm_version().expect("version"),
        shipped["timm_version"].as_str().expect("version")
    );
}
