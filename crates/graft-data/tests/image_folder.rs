//! ImageFolder on real encoded files: sorted classes, decoding, a corrupt JPEG named by the
//! `error` policy and counted by `skip`, empty class folders and datasets as clear errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use graft_data::transform::{Interp, TransformCfg, eval_transform};
use graft_data::{BadSample, Dataset, ImageFolder, Loader, LoaderConfig};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("graft-data-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp");
    d
}

fn write_image(path: &Path, seed: u32) {
    let img = image::RgbImage::from_fn(20, 16, |x, y| {
        image::Rgb([
            (x * 12 + seed) as u8,
            (y * 15) as u8,
            ((x + y + seed) * 5) as u8,
        ])
    });
    img.save(path).expect("encode");
}

fn folder(root: &Path) {
    for (c, ext) in [("zebra", "jpg"), ("ant", "png"), ("moth", "jpeg")] {
        std::fs::create_dir_all(root.join(c)).expect("dir");
        for i in 0..3 {
            write_image(&root.join(c).join(format!("{i}.{ext}")), i * 7);
        }
    }
    std::fs::write(root.join("ant/notes.txt"), "not an image").expect("txt");
}

#[test]
fn classes_sorted_and_images_decoded() {
    let root = tmp("ok");
    folder(&root);
    let ds = ImageFolder::new(&root).expect("scan");
    assert_eq!(ds.classes(), ["ant", "moth", "zebra"]);
    assert_eq!(ds.len(), 9);
    assert_eq!(ds.labels(), vec![0, 0, 0, 1, 1, 1, 2, 2, 2]);
    let s = ds.get(0).expect("png");
    assert_eq!(s.shape, [3, 16, 20]);
    assert!(
        (s.data[1] - 12.0 / 255.0).abs() < 1e-6,
        "png decodes losslessly"
    );
    let cfg = TransformCfg {
        input_size: [3, 12, 12],
        crop_pct: 0.875,
        interp: Interp::Bilinear,
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
        crop_mode: Default::default(),
    };
    let l = Loader::new(Arc::new(ds), LoaderConfig::eval(4))
        .expect("loader")
        .with_transform(Arc::new(eval_transform(&cfg, true)));
    let batches: Vec<_> = l
        .epoch(0)
        .collect::<graft_core::Result<Vec<_>>>()
        .expect("batches");
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].images.shape(), [4, 3, 12, 12]);
}

#[test]
fn corrupt_file_error_names_it_and_skip_counts_it() {
    let root = tmp("bad");
    folder(&root);
    std::fs::write(
        root.join("moth/broken.jpg"),
        b"\xff\xd8\xff\xe0 definitely not a jpeg",
    )
    .expect("write");
    let ds: Arc<dyn Dataset> = Arc::new(ImageFolder::new(&root).expect("scan"));
    assert_eq!(ds.len(), 10);
    let cfg = TransformCfg {
        input_size: [3, 12, 12],
        crop_pct: 1.0,
        interp: Interp::Bicubic,
        mean: vec![0.0; 3],
        std: vec![1.0; 3],
        crop_mode: Default::default(),
    };
    let t = Arc::new(eval_transform(&cfg, true));
    let strict = Loader::new(ds.clone(), LoaderConfig::eval(3))
        .expect("loader")
        .with_transform(t.clone());
    let err = strict
        .epoch(0)
        .find_map(Result::err)
        .expect("the corrupt file is an error");
    assert!(err.to_string().contains("broken.jpg"), "{err}");
    let lenient = Loader::new(
        ds,
        LoaderConfig {
            bad_samples: BadSample::Skip,
            ..LoaderConfig::eval(3)
        },
    )
    .expect("loader")
    .with_transform(t);
    let n: usize = lenient
        .epoch(0)
        .map(|b| b.expect("batch").labels.len())
        .sum();
    assert_eq!(n, 9);
    assert_eq!(lenient.skipped(), 1);
}

#[test]
fn empty_class_folder_and_empty_root_are_errors() {
    let root = tmp("empty");
    let err = ImageFolder::new(&root).expect_err("no classes");
    assert!(err.to_string().contains("no class folders"), "{err}");
    folder(&root);
    std::fs::create_dir_all(root.join("wasp")).expect("dir");
    let err = ImageFolder::new(&root).expect_err("empty class");
    assert!(err.to_string().contains("wasp"), "{err}");
    let err = ImageFolder::new(&root.join("missing")).expect_err("missing root");
    assert!(err.to_string().contains("missing"), "{err}");
}
