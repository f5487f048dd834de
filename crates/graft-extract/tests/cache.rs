//! The feature cache on the pure-Rust backend: a second identical extraction runs zero trunk
//! forwards and returns the same features; other weights, another stage or other data miss the
//! cache. Few-shot heads on the cached features beat chance by far.

use std::sync::Arc;

use graft_data::{ArrayDataset, Dataset, Loader, LoaderConfig, Subset, stratified_split};
use graft_extract::{FeatureSpec, KnnHead, PrototypeHead, accuracy, extract};
use graft_ndarray::NdArray;
use graft_zoo::{ModelOptions, create_model};

#[test]
fn second_identical_extraction_does_no_forward() {
    let cache = std::env::temp_dir().join(format!("graft-extract-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let parts = stratified_split(&digits.labels(), &[0.15, 0.1, 0.75], 0).expect("split");
    let train = Loader::new(
        Arc::new(Subset::new(digits.clone(), parts[0].clone()).expect("s")),
        LoaderConfig::eval(64),
    )
    .expect("l");
    let test = Loader::new(
        Arc::new(Subset::new(digits.clone(), parts[1].clone()).expect("s")),
        LoaderConfig::eval(64),
    )
    .expect("l");
    let opts = ModelOptions::default().num_classes(10).in_chans(1).seed(0);
    let (model, _) = create_model(&NdArray, "resnet18_small", &opts).expect("model");

    let (a, ra) = extract(&model, &train, &FeatureSpec::Pooled, &cache).expect("first");
    assert!(!ra.cached && ra.forwards == train.num_batches());
    let (b, rb) = extract(&model, &train, &FeatureSpec::Pooled, &cache).expect("second");
    assert!(rb.cached, "{rb:?}");
    assert_eq!(rb.forwards, 0, "a cache hit runs no trunk forward");
    assert_eq!(a, b);
    assert_eq!((a.n, a.dim), (parts[0].len(), 512));

    // other weights, another stage, other data: misses
    let (other, _) =
        create_model(&NdArray, "resnet18_small", &opts.clone().seed(1)).expect("model");
    assert!(
        !extract(&other, &train, &FeatureSpec::Pooled, &cache)
            .expect("other weights")
            .1
            .cached
    );
    let (s, rs) =
        extract(&model, &train, &FeatureSpec::Stage("layer2".into()), &cache).expect("stage");
    assert!(!rs.cached && s.dim == 128);
    let (t, rt) = extract(&model, &test, &FeatureSpec::Pooled, &cache).expect("test");
    assert!(!rt.cached);

    // few-shot heads on random-init trunk features still beat chance (10 %) by far
    let proto = PrototypeHead::fit(&a, 10).expect("proto");
    let pa = accuracy(&proto.predict(&t), &t);
    let knn = KnnHead::fit(&a, 10, 5).expect("knn");
    let ka = accuracy(&knn.predict(&t), &t);
    eprintln!(
        "prototype {:.1} %, 5-NN {:.1} % on random-init resnet18_small features",
        100.0 * pa,
        100.0 * ka
    );
    assert!(pa > 0.5 && ka > 0.5, "prototype {pa}, knn {ka}");
    let shuffled =
        Loader::new(Arc::new(ArrayDataset::digits()), LoaderConfig::train(64)).expect("l");
    assert!(
        extract(&model, &shuffled, &FeatureSpec::Pooled, &cache).is_err(),
        "a shuffling loader is refused"
    );
    let _ = std::fs::remove_dir_all(&cache);
}
