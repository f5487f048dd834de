//! graft's eval transform against timm's on scikit-learn's two sample photos (real JPEGs), in
//! 0–255 units before normalisation: mean abs diff ≤ 0.5, max ≤ 8, for a timm ResNet cfg
//! (bicubic, crop_pct 0.95) and a ViT cfg (bicubic, crop_pct 0.9). JPEG decoders differ slightly
//! (the `image` crate vs PIL's libjpeg), resampling follows PIL.

mod common;

use std::path::PathBuf;

use graft::data::transform::{Interp, TransformCfg};

#[test]
fn eval_transform_matches_timm_on_real_photos() {
    let out = common::temp_dir("transform-ref");
    common::run_python("transform_reference.py", &[out.to_str().expect("utf-8")]);
    let photos: Vec<PathBuf> = std::fs::read_to_string(out.join("photos.txt"))
        .expect("photos")
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(photos.len(), 2);
    let cfgs = [
        ("resnet", 0.95, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ("vit", 0.9, [0.5; 3], [0.5; 3]),
    ];
    let mut report = Vec::new();
    for (name, crop_pct, mean, std) in cfgs {
        let cfg = TransformCfg {
            input_size: [3, 224, 224],
            crop_pct,
            interp: Interp::Bicubic,
            mean: mean.to_vec(),
            std: std.to_vec(),
            crop_mode: Default::default(),
        };
        for photo in &photos {
            let stem = photo.file_stem().and_then(|s| s.to_str()).expect("stem");
            let (mean_diff, max) =
                common::eval_transform_diff(photo, &cfg, &out.join(format!("{stem}-{name}.npy")));
            report.push(format!("{stem} {name}: mean {mean_diff:.3}, max {max:.1}"));
            assert!(
                mean_diff <= 0.5 && max <= 8.0,
                "{stem} with the {name} cfg: mean abs diff {mean_diff:.3}, max {max:.1} (0-255 units)"
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}
