//! ImageFolder: `root/<class>/<image>` (torchvision's and timm's layout). Classes are the
//! sub-directory names sorted as torchvision sorts them (by name); files with an image extension
//! are taken in sorted order. Images decode to RGB (grayscale and palette images are expanded) as
//! CHW floats in [0, 1].

use std::path::{Path, PathBuf};

use graft_core::{Error, Result};

use crate::dataset::{Dataset, Sample};

/// torchvision's `IMG_EXTENSIONS` that the `image` crate decodes here.
const EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "bmp"];

/// Images in class folders.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    samples: Vec<(PathBuf, usize)>,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

impl ImageFolder {
    /// Scans `root`. A missing root, a root without class folders, or a class folder without
    /// images is an error naming the directory.
    pub fn new(root: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
        let mut classes: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        classes.sort();
        if classes.is_empty() {
            return Err(Error::format(
                root,
                "no class folders (expected root/<class>/<image>)",
            ));
        }
        let mut samples = Vec::new();
        for (label, c) in classes.iter().enumerate() {
            let dir = root.join(c);
            let mut files: Vec<PathBuf> = walk(&dir)?.into_iter().filter(|p| is_image(p)).collect();
            files.sort();
            if files.is_empty() {
                return Err(Error::format(
                    &dir,
                    format!(
                        "class folder {c:?} has no images ({})",
                        EXTENSIONS.join(", ")
                    ),
                ));
            }
            samples.extend(files.into_iter().map(|f| (f, label)));
        }
        Ok(Self {
            root: root.to_path_buf(),
            classes,
            samples,
        })
    }
    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Path and label of every sample.
    pub fn samples(&self) -> &[(PathBuf, usize)] {
        &self.samples
    }
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

/// Decodes an image file to RGB CHW floats in [0, 1]; errors name the file.
pub fn decode_rgb(path: &Path) -> Result<([usize; 3], Vec<f32>)> {
    let img = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?
        .decode()
        .map_err(|e| Error::format(path, format!("cannot decode image: {e}")))?
        .into_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = img.into_raw();
    let mut data = vec![0f32; 3 * h * w];
    let (r, rest) = data.split_at_mut(h * w);
    let (g, b) = rest.split_at_mut(h * w);
    const INV: f32 = 1.0 / 255.0;
    for (i, px) in raw.chunks_exact(3).enumerate() {
        r[i] = f32::from(px[0]) * INV;
        g[i] = f32::from(px[1]) * INV;
        b[i] = f32::from(px[2]) * INV;
    }
    Ok(([3, h, w], data))
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.samples.len()
    }
    fn label(&self, i: usize) -> usize {
        self.samples[i].1
    }
    fn get(&self, i: usize) -> Result<Sample> {
        let (path, label) = self.samples.get(i).ok_or_else(|| {
            Error::invalid(
                "ImageFolder::get",
                format!("index {i} of {}", self.samples.len()),
            )
        })?;
        let (shape, data) = decode_rgb(path)?;
        Ok(Sample {
            shape,
            data,
            label: *label,
        })
    }
    fn classes(&self) -> &[String] {
        &self.classes
    }
    /// Hash of every file's path, size and modification time (and label): a changed, added or
    /// removed image changes it; nothing is decoded.
    fn fingerprint(&self) -> Result<u64> {
        let mut b = Vec::new();
        for (p, l) in &self.samples {
            let m = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            b.extend(p.to_string_lossy().as_bytes());
            b.extend(m.len().to_le_bytes());
            b.extend(mtime.to_le_bytes());
            b.extend((*l as u64).to_le_bytes());
        }
        Ok(graft_backend::init::stable_hash(&b))
    }
}
