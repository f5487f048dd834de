//! Mutation fuzzing of every parser that takes untrusted bytes (issue 17): safetensors (open and
//! read every tensor), `.npy` (header and array), a user model's `config.json` (graft's and
//! timm's layouts), image decoding (PNG, JPEG, BMP, WebP), the text readers (CSV, TSV, JSON
//! Lines, lines) and `torch.save` files (zip and legacy pickle).
//!
//! Each target starts from its seed corpus in `tests/fuzz/<target>/` (files written by PyTorch,
//! NumPy, PIL and timm's layout) and mutates it — bit flips, byte overwrites with boundary
//! values, insertions, deletions, duplications, truncation, splices of two seeds, and for text
//! formats huge / negative / non-finite numbers — for a bounded time (`GRAFT_FUZZ_SECS` per
//! target, default 6), from a fixed seed (`GRAFT_FUZZ_SEED`) so a failure reproduces. An input
//! passes when the parser returns `Ok` or `Err`; a panic fails the test and the input is saved
//! under `target/fuzz-crashes/`; an abort (an allocation of a size taken from the file) kills
//! the test, which fails too. No cargo-fuzz: it needs a nightly compiler, and this keeps the
//! targets in the ordinary test run.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("seed"))
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

const INTERESTING: [&[u8]; 12] = [
    b"0",
    b"-1",
    b"4294967296",
    b"18446744073709551615",
    b"1e308",
    b"NaN",
    b"inf",
    b"-0",
    b"[]",
    b"{}",
    b"\"\"",
    b"99999999999",
];

fn mutate(rng: &mut ChaCha8Rng, seeds: &[Vec<u8>], text: bool) -> Vec<u8> {
    let mut v = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        let n = v.len();
        match rng.random_range(0..9) {
            0 if n > 0 => {
                let i = rng.random_range(0..n);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if n > 0 => {
                let i = rng.random_range(0..n);
                v[i] = [0u8, 0xff, 0x7f, 0x80, 1][rng.random_range(0..5)];
            }
            2 => {
                let i = rng.random_range(0..=n);
                let k = rng.random_range(1..16);
                let bytes: Vec<u8> = (0..k).map(|_| rng.random()).collect();
                v.splice(i..i, bytes);
            }
            3 if n > 1 => {
                let a = rng.random_range(0..n);
                let b = (a + rng.random_range(1..64)).min(n);
                v.drain(a..b);
            }
            4 if n > 1 => {
                let a = rng.random_range(0..n);
                let b = (a + rng.random_range(1..64)).min(n);
                let part = v[a..b].to_vec();
                let at = rng.random_range(0..=v.len());
                v.splice(at..at, part);
            }
            5 if n > 0 => v.truncate(rng.random_range(0..n)),
            6 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let cut = rng.random_range(0..=v.len());
                let from = rng.random_range(0..=other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            7 if text && n > 0 => {
                // a number (or a token) replaced by an extreme one
                let i = rng.random_range(0..n);
                let end = (i + rng.random_range(1..6)).min(n);
                let with = INTERESTING[rng.random_range(0..INTERESTING.len())];
                v.splice(i..end, with.iter().copied());
            }
            8 if n >= 8 => {
                // a little-endian length or offset field set to a boundary value
                let i = rng.random_range(0..n - 7);
                let val: u64 =
                    [u64::MAX, 1 << 40, 1 << 31, 0, n as u64 * 2][rng.random_range(0..5)];
                v[i..i + 8].copy_from_slice(&val.to_le_bytes());
            }
            _ => {}
        }
    }
    v
}

/// Runs `parse` on mutated inputs written to a file named `name` for the target's time budget.
fn fuzz(target: &str, name: &str, text: bool, parse: impl Fn(&Path)) {
    fuzz_for(target, name, text, 1, parse)
}

/// [`fuzz`] with a `share` of the target's time budget (targets that run several formats).
fn fuzz_for(target: &str, name: &str, text: bool, share: u32, parse: impl Fn(&Path)) {
    let seeds = corpus(target);
    let budget: f64 = std::env::var("GRAFT_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6.0);
    let secs = budget / f64::from(share);
    let seed: u64 = std::env::var("GRAFT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(17);
    let dir = std::env::temp_dir().join(format!("graft-fuzz-{target}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let path = dir.join(name);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // the seeds themselves must parse
    for s in &seeds {
        std::fs::write(&path, s).expect("write");
        parse(&path);
    }
    let t0 = Instant::now();
    let mut runs = 0u64;
    while t0.elapsed() < Duration::from_secs_f64(secs) {
        let input = mutate(&mut rng, &seeds, text);
        std::fs::write(&path, &input).expect("write");
        if std::panic::catch_unwind(AssertUnwindSafe(|| parse(&path))).is_err() {
            let keep = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/fuzz-crashes")
                .join(format!("{target}-{runs}-{name}"));
            let _ = std::fs::create_dir_all(keep.parent().expect("parent"));
            let _ = std::fs::write(&keep, &input);
            panic!(
                "{target}: input {runs} panicked; saved to {}",
                keep.display()
            );
        }
        runs += 1;
    }
    eprintln!("{target} ({name}): {runs} mutated inputs in {secs:.1} s, none panicked");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fuzz_safetensors() {
    fuzz("safetensors", "w.safetensors", false, |p| {
        if let Ok(f) = graft::zoo::WeightsFile::open(p) {
            for name in f.index().keys() {
                let _ = f.read(name);
            }
            let _ = f.head_classes("fc");
        }
        if let Ok(f) = graft::zoo::WeightsFile::open_index(p) {
            let _ = f.head_classes("fc");
        }
    });
}

#[test]
fn fuzz_npy() {
    fuzz("npy", "x.npy", false, |p| {
        let _ = graft::data::npy::header(p);
        let _ = graft::data::npy::read_f32(p);
        let _ = graft::data::ArrayDataset::from_npy(p, p);
    });
}

#[test]
fn fuzz_user_model_config() {
    fuzz("config", "config.json", true, |p| {
        if let Ok(c) = graft::zoo::UserModelConfig::read(p) {
            // what the checks let through must build without aborting
            let _ = c.check();
        }
    });
}

#[test]
fn fuzz_image_decoding() {
    // a small pixel bound: a mutated header may claim any size
    fuzz("image", "x.img", false, |p| {
        let _ = graft::data::decode_rgb_bounded(p, Some(1 << 20));
    });
}

#[test]
fn fuzz_text_readers() {
    for (ext, fmt) in [
        ("csv", graft::text::TextFormat::Csv),
        ("tsv", graft::text::TextFormat::Tsv),
        ("jsonl", graft::text::TextFormat::Jsonl),
        ("txt", graft::text::TextFormat::Lines),
    ] {
        fuzz_for("text", &format!("t.{ext}"), true, 2, |p| {
            let cols = graft::text::TextColumns::default();
            let _ = graft::text::TextDataset::read(p, Some(fmt), &cols, None);
            let _ = graft::text::read_texts(p, Some(fmt), "text");
        });
    }
}

#[test]
fn fuzz_torch_save_files() {
    fuzz("torch", "w.pth", false, |p| {
        let _ = graft::zoo::torch_file::read(p);
    });
}
