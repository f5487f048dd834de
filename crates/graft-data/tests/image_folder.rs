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
    let s = ds.get(0).expect("png").into_image("test").expect("image");
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
    assert_eq!(batches[0].inputs.data().shape(), [4, 3, 12, 12]);
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

/// Issue 17.8: a directory symlink loop turned 18 images into 738 mislabelled ones. Each real
/// directory is entered once: a loop adds nothing, a second link to a scanned directory adds
/// nothing (its images stay under their first class).
#[cfg(unix)]
#[test]
fn symlink_loops_and_shared_directories_are_visited_once() {
    let root = tmp("loops");
    folder(&root);
    std::os::unix::fs::symlink(&root, root.join("ant/up")).expect("loop to the root");
    std::os::unix::fs::symlink(root.join("ant"), root.join("moth/also-ant")).expect("link");
    std::fs::create_dir_all(root.join("zebra/deeper")).expect("dir");
    std::os::unix::fs::symlink(root.join("zebra"), root.join("zebra/deeper/back")).expect("loop");
    let ds = ImageFolder::new(&root).expect("scan");
    assert_eq!(ds.len(), 9, "three images a class, each once");
    for (c, want) in [("ant", 0usize), ("moth", 1), ("zebra", 2)] {
        let n = ds.samples().iter().filter(|(_, l)| *l == want).count();
        assert_eq!(n, 3, "{c}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// CRC-32 (IEEE, as PNG chunks carry), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Issue 17.3: a small PNG declaring 20000² pixels decoded to a full-resolution float copy
/// (6.1 GB for one `graft predict`). The size is read from the header and refused past the
/// pixel bound (PIL's default), before any pixel is decoded; the bound is configurable.
#[test]
fn a_decompression_bomb_is_refused_from_its_header() {
    let root = tmp("bomb");
    let small = root.join("small.png");
    image::GrayImage::from_pixel(4, 4, image::Luma([7u8]))
        .save(&small)
        .expect("png");
    let mut png = std::fs::read(&small).expect("read");
    // IHDR: 8-byte signature, 4-byte length, "IHDR", width, height, ...; CRC over type + data
    png[16..20].copy_from_slice(&20_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let bomb = root.join("bomb.png");
    std::fs::write(&bomb, &png).expect("write");
    let err = graft_data::decode_rgb(&bomb)
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("bomb.png")
            && err.contains("20000x20000 = 400000000 pixels")
            && err.contains("89478485"),
        "{err}"
    );
    // the bound is a setting: a 4x4 image past a 10-pixel bound, and within the default
    let err = graft_data::decode_rgb_bounded(&small, Some(10))
        .expect_err("bound")
        .to_string();
    assert!(err.contains("16 pixels"), "{err}");
    let (shape, data) = graft_data::decode_rgb_bounded(&small, None).expect("no bound");
    assert_eq!(shape, [3, 4, 4]);
    assert!(data.iter().all(|&v| (v - 7.0 / 255.0).abs() < 1e-7));
    // an image folder takes the bound too
    std::fs::create_dir_all(root.join("set/a")).expect("dir");
    std::fs::copy(&small, root.join("set/a/x.png")).expect("copy");
    let ds = ImageFolder::new(&root.join("set"))
        .expect("scan")
        .with_max_pixels(Some(10));
    assert!(ds.get(0).expect_err("bound").to_string().contains("x.png"));
    let _ = std::fs::remove_dir_all(&root);
}

/// Issue 17.3: the loader hands image files to the transform as decoded 8-bit pixels; the
/// result is the float path's, bit for bit, for the eval and train transforms, gray and RGB.
#[test]
fn the_8_bit_path_equals_the_float_path() {
    use graft_data::Transform;
    use graft_data::transform::{CropMode, train_transform};
    use rand::SeedableRng;
    let root = tmp("raw-path");
    let gray = root.join("g.png");
    image::GrayImage::from_fn(37, 23, |x, y| image::Luma([(x * 7 + y * 3) as u8]))
        .save(&gray)
        .expect("png");
    let rgb = root.join("c.png");
    write_image(&rgb, 3);
    for p in [&gray, &rgb] {
        let raw = graft_data::decode_raw(p, None).expect("raw");
        for (mode, crop_pct) in [
            (CropMode::Center, 0.875),
            (CropMode::Squash, 0.9),
            (CropMode::Center, 1.0),
        ] {
            let cfg = TransformCfg {
                input_size: [3, 12, 12],
                crop_pct,
                interp: Interp::Bicubic,
                mean: vec![0.5; 3],
                std: vec![0.25; 3],
                crop_mode: mode,
            };
            for t in [eval_transform(&cfg, true), train_transform(&cfg)] {
                for seed in 0..4 {
                    let mut r1 = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                    let mut r2 = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                    let a = t.apply_raw(raw.clone(), &mut r1).expect("raw");
                    let b = t.apply(raw.to_image(), &mut r2).expect("float");
                    assert!(a == b, "{}: {mode:?} seed {seed}", p.display());
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
