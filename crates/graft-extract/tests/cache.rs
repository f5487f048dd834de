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

fn digits_loader(n: usize) -> Loader {
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    Loader::new(
        Arc::new(Subset::new(digits, (0..n).collect()).expect("s")),
        LoaderConfig::eval(32),
    )
    .expect("l")
}

/// Issue 17.7: zeroing bytes inside a cache file was reported "from the cache" and moved the
/// accuracy. The cache stores a SHA-256 of its content; a mismatch (or an unreadable file) is
/// recomputed, said so in the report, and the file replaced.
#[test]
fn a_corrupted_cache_is_recomputed_not_trusted() {
    let cache = std::env::temp_dir().join(format!("graft-extract-corrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let loader = digits_loader(96);
    let opts = ModelOptions::default().num_classes(10).in_chans(1).seed(0);
    let (model, _) = create_model(&NdArray, "resnet18_small", &opts).expect("model");
    let (a, ra) = extract(&model, &loader, &FeatureSpec::Pooled, &cache).expect("first");
    let path = ra.paths[0].clone();
    let mut bytes = std::fs::read(&path).expect("cache");
    let n = bytes.len();
    for b in &mut bytes[n - 4096..n - 1024] {
        *b = 0;
    }
    std::fs::write(&path, &bytes).expect("corrupt");
    let (b, rb) = extract(&model, &loader, &FeatureSpec::Pooled, &cache).expect("again");
    assert!(!rb.cached && rb.forwards > 0, "{rb:?}");
    assert_eq!(rb.recomputed.len(), 1, "{rb:?}");
    assert!(rb.recomputed[0].contains("checksum mismatch"), "{rb:?}");
    assert_eq!(a, b, "the recomputed features are the originals");
    // the replaced file is a clean hit again; a truncated one is recomputed too
    let (_, rc) = extract(&model, &loader, &FeatureSpec::Pooled, &cache).expect("hit");
    assert!(rc.cached && rc.recomputed.is_empty(), "{rc:?}");
    std::fs::write(&path, &bytes[..100]).expect("truncate");
    let (_, rd) = extract(&model, &loader, &FeatureSpec::Pooled, &cache).expect("again");
    assert!(!rd.cached && rd.recomputed.len() == 1, "{rd:?}");
    let _ = std::fs::remove_dir_all(&cache);
}

/// Issue 17.4: NaN weights gave NaN features, which prototype / kNN heads scored at chance and
/// exported. A non-finite feature is an error naming the model and the sample.
#[test]
fn non_finite_features_are_an_error() {
    let cache = std::env::temp_dir().join(format!("graft-extract-nan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let opts = ModelOptions::default().num_classes(10).in_chans(1).seed(0);
    let (mut model, _) = create_model(&NdArray, "resnet18_small", &opts).expect("model");
    let w = model.params().get("layer4.1.conv2.weight").expect("w");
    let shape = graft_backend::Backend::shape(&NdArray, w);
    let n: usize = shape.iter().product();
    let nan = graft_backend::TensorData::f32(&shape, vec![f32::NAN; n]).expect("nan");
    let t = graft_backend::Backend::from_data(&NdArray, &nan).expect("t");
    model
        .params_mut()
        .replace("layer4.1.conv2.weight", t)
        .expect("replace");
    let err = extract(&model, &digits_loader(40), &FeatureSpec::Pooled, &cache)
        .expect_err("NaN features")
        .to_string();
    assert!(
        err.contains("resnet18_small") && err.contains("sample 0") && err.contains("not finite"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&cache);
}
