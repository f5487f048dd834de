//! Feature extraction on the pure-Rust backend: the frozen trunk of a model trained on digits
//! 0–4 serves digits 5–9 from 10 labelled images per class. Features are cached (a second run
//! does no trunk forward); logistic, prototype and kNN heads fit in well under a second; the
//! logistic head goes onto the trunk and the pair saves as one user model.
//!
//! cargo run --example extract_features

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;

use anyhow::Result;
use graft::NdArray;
use graft::data::{Loader, LoaderConfig, Subset, k_shot};
use graft::extract::{
    FeatureSpec, KnnHead, LogisticConfig, LogisticHead, PrototypeHead, accuracy, extract,
};
use graft::zoo::{ModelOptions, Registry};

fn main() -> Result<()> {
    let source = common::digits_source("digits04", &[0, 1, 2, 3, 4])?;
    let common::Halves {
        digits,
        first,
        second,
    } = common::digits_halves()?;
    let target = [5, 6, 7, 8, 9];
    let few = k_shot(&digits.labels(), &first, 10, 0)?;
    let train = Loader::new(
        Arc::new(Subset::with_classes(digits.clone(), few, &target)?),
        LoaderConfig::eval(64),
    )?;
    let test = Loader::new(
        Arc::new(Subset::with_classes(digits, second, &target)?),
        LoaderConfig::eval(256),
    )?;

    // the route: trunk on ndarray (no libtorch), cached features, heads on the host
    let mut reg = Registry::builtin();
    let name = reg.register_dir(&source, None)?;
    let opts = ModelOptions::default().num_classes(5).in_chans(1);
    let (mut model, _) = reg.create(&NdArray, &name, &opts)?;
    let cache = common::work_dir().join("feature-cache");
    let (tr, report) = extract(&model, &train, &FeatureSpec::Pooled, &cache)?;
    let (te, _) = extract(&model, &test, &FeatureSpec::Pooled, &cache)?;
    let logistic = LogisticHead::fit(&tr, 5, &LogisticConfig::default())?;
    let prototype = PrototypeHead::fit(&tr, 5)?;
    let knn = KnnHead::fit(&tr, 5, 3)?;

    println!(
        "{} trunk: {} labelled images of digits 5-9 -> {}-d features ({}), tested on {}",
        name,
        tr.n,
        tr.dim,
        if report.cached {
            "from the cache, no trunk forward".to_string()
        } else {
            format!("{} trunk forwards, now cached", report.forwards)
        },
        te.n
    );
    println!("| head | test accuracy |\n|---|---|");
    println!(
        "| logistic (linfa) | {:.2} % |",
        100.0 * accuracy(&logistic.predict(&te)?, &te)
    );
    println!(
        "| prototype (cosine) | {:.2} % |",
        100.0 * accuracy(&prototype.predict(&te), &te)
    );
    println!(
        "| 3-NN (cosine) | {:.2} % |",
        100.0 * accuracy(&knn.predict(&te), &te)
    );

    logistic.install(&mut model, &tr.classes)?;
    let out = common::work_dir().join("digits59-logistic");
    model.save_user_model(&out)?;
    println!(
        "trunk + logistic head saved as a user model: {}",
        out.display()
    );
    Ok(())
}
