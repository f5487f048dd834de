//! Loader throughput: an ImageFolder of 64 JPEGs (crops of scikit-learn's sample photos from the
//! venv when present, else a synthetic pattern) through timm's eval transform, batches of 32;
//! and the in-memory digits, batches of 256.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group};
use graft::data::transform::eval_transform;
use graft::data::{ArrayDataset, Dataset, ImageFolder, Loader, LoaderConfig};

use super::config;

fn photos() -> Vec<image::RgbImage> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let found: Vec<image::RgbImage> = std::fs::read_dir(&venv)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|py| {
            ["china.jpg", "flower.jpg"].map(|n| {
                py.path()
                    .join("site-packages/sklearn/datasets/images")
                    .join(n)
            })
        })
        .filter_map(|p| image::open(p).ok().map(|i| i.to_rgb8()))
        .collect();
    if !found.is_empty() {
        return found;
    }
    vec![image::RgbImage::from_fn(640, 480, |x, y| {
        let v = (x * 7 + y * 13 + (x * y) % 251) as u8;
        image::Rgb([v, v.wrapping_mul(3), 255 - v])
    })]
}

fn image_folder(n: usize) -> PathBuf {
    let root = std::env::temp_dir().join(format!("graft-bench-loader-{}", std::process::id()));
    let photos = photos();
    for i in 0..n {
        let dir = root.join(format!("class{}", i % 4));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let p = &photos[i % photos.len()];
        let (w, h) = (400.min(p.width()), 380.min(p.height()));
        let x = (i as u32 * 37) % (p.width() - w + 1);
        let y = (i as u32 * 23) % (p.height() - h + 1);
        let crop = image::imageops::crop_imm(p, x, y, w, h).to_image();
        crop.save(dir.join(format!("{i}.jpg"))).expect("save jpeg");
    }
    root
}

fn loader(c: &mut Criterion) {
    let n = 64;
    let root = image_folder(n);
    let ds: Arc<dyn Dataset> = Arc::new(ImageFolder::new(&root).expect("image folder"));
    // ResNet-18's eval transform: resize to 256, centre crop 224, bilinear, ImageNet mean / std
    let cfg = graft::train::data_config(
        &graft::zoo::Registry::builtin()
            .get("resnet18")
            .expect("resnet18")
            .cfg,
    );
    let jpegs = Loader::new(ds, LoaderConfig::eval(32))
        .expect("loader")
        .with_transform(Arc::new(eval_transform(&cfg, true)));
    let mut g = c.benchmark_group("loader");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("jpeg folder eval transform 224", |bch| {
        bch.iter(|| {
            jpegs
                .epoch(0)
                .map(|b| b.expect("batch").labels.len())
                .sum::<usize>()
        })
    });
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let nd = digits.len();
    let mem = Loader::new(digits, LoaderConfig::train(256)).expect("loader");
    g.throughput(Throughput::Elements(nd as u64));
    g.bench_function("digits in memory, shuffled batches of 256", |bch| {
        bch.iter(|| {
            mem.epoch(1)
                .map(|b| b.expect("batch").labels.len())
                .sum::<usize>()
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&root);
}

criterion_group! {
    name = benches;
    config = config();
    targets = loader
}
