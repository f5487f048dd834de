//! ImageFolder: `root/<class>/<image>` (torchvision's and timm's layout). Classes are the
//! sub-directory names sorted as torchvision sorts them (by name); files with an image extension
//! are taken in sorted order. Images decode to RGB (grayscale and palette images are expanded) as
//! CHW floats in [0, 1].

use std::path::{Path, PathBuf};

use graft_core::{Error, Result};

use crate::dataset::{Dataset, Image, RawImage, Sample};

/// torchvision's `IMG_EXTENSIONS` that the `image` crate decodes here.
const EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "bmp"];

/// Images in class folders.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    samples: Vec<(PathBuf, usize)>,
    max_pixels: Option<u64>,
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
        // the root and every class folder count as visited from the start: a link up to the
        // root or across to another class adds nothing to the class it sits in
        let mut seen = std::collections::HashSet::new();
        for d in std::iter::once(root.to_path_buf()).chain(classes.iter().map(|c| root.join(c))) {
            seen.insert(std::fs::canonicalize(&d).map_err(|e| Error::io(&d, e))?);
        }
        for (label, c) in classes.iter().enumerate() {
            let dir = root.join(c);
            let mut files = Vec::new();
            walk(&dir, &mut seen, &mut files)?;
            let mut files: Vec<PathBuf> = files.into_iter().filter(|p| is_image_file(p)).collect();
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
            max_pixels: graft_core::limits::max_image_pixels()?,
        })
    }
    /// Every image under `root` (sub-folders included, sorted by path) as one class,
    /// `"unlabeled"`: unlabelled data for semi-supervised training, whose labels nobody reads.
    /// A root without images is an error naming it.
    pub fn unlabeled(root: &Path) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        seen.insert(std::fs::canonicalize(root).map_err(|e| Error::io(root, e))?);
        let mut files = Vec::new();
        walk(root, &mut seen, &mut files)?;
        let mut files: Vec<PathBuf> = files.into_iter().filter(|p| is_image_file(p)).collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::format(
                root,
                format!("no images ({}) under this directory", EXTENSIONS.join(", ")),
            ));
        }
        Ok(Self {
            root: root.to_path_buf(),
            classes: vec!["unlabeled".into()],
            samples: files.into_iter().map(|f| (f, 0)).collect(),
            max_pixels: graft_core::limits::max_image_pixels()?,
        })
    }
    /// The most pixels one image may decode to (`None`: no bound). Default:
    /// [`graft_core::limits::max_image_pixels`].
    pub fn with_max_pixels(mut self, max: Option<u64>) -> Self {
        self.max_pixels = max;
        self
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

/// Every file under `dir`, following symbolic links (as torchvision does) but entering each
/// real directory once: a link back up the tree (a loop) or a second link to a directory already
/// scanned adds nothing, so no image is counted twice or under two classes.
fn walk(
    dir: &Path,
    seen: &mut std::collections::HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        if p.is_dir() {
            let real = std::fs::canonicalize(&p).map_err(|e| Error::io(&p, e))?;
            if seen.insert(real) {
                walk(&p, seen, out)?;
            }
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Decodes an image file to RGB CHW floats in [0, 1]; errors name the file. Images past the
/// pixel bound ([`graft_core::limits::max_image_pixels`]: `GRAFT_MAX_IMAGE_PIXELS`, else PIL's
/// default) are refused before decoding, as PIL refuses a decompression bomb.
pub fn decode_rgb(path: &Path) -> Result<([usize; 3], Vec<f32>)> {
    decode_rgb_bounded(path, graft_core::limits::max_image_pixels()?)
}

fn reader(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))
}

/// [`decode_rgb`] with an explicit pixel bound (`None`: none).
pub fn decode_rgb_bounded(path: &Path, max_pixels: Option<u64>) -> Result<([usize; 3], Vec<f32>)> {
    let s = decode_raw(path, max_pixels)?.to_image();
    Ok((s.shape, s.data))
}

/// True for a file whose extension is an image format ImageFolder reads (jpg, jpeg, png, webp,
/// bmp; any case).
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decodes an image file to 8-bit pixels: gray stays one channel, everything else becomes RGB
/// (PIL's `convert("RGB")`: alpha dropped, 16-bit scaled to 8). The size comes from the file's
/// header and is checked against `max_pixels` before any pixel is decoded; the decoder's own
/// allocations are capped to what that size needs, so a header that lies cannot make it
/// allocate more. The result is what the file decodes to and nothing more.
pub fn decode_raw(path: &Path, max_pixels: Option<u64>) -> Result<RawImage> {
    let (w, h) = reader(path)?
        .into_dimensions()
        .map_err(|e| Error::format(path, format!("cannot read the image header: {e}")))?;
    let pixels = u64::from(w) * u64::from(h);
    if let Some(max) = max_pixels
        && pixels > max
    {
        return Err(Error::format(
            path,
            format!(
                "{w}x{h} = {pixels} pixels, more than the {max}-pixel bound for one image (a possible decompression bomb; set {} or data.max_image_pixels to allow it)",
                graft_core::limits::MAX_IMAGE_PIXELS_ENV
            ),
        ));
    }
    graft_core::limits::check_alloc(
        &format!("{}: a {w}x{h} image", path.display()),
        Some(u128::from(pixels) * 8),
    )?;
    let mut r = reader(path)?;
    let mut limits = image::Limits::default();
    // 8 bytes a pixel: up to 16-bit RGBA, the widest decoded layout graft reads
    limits.max_alloc = Some(pixels.saturating_mul(8).max(1 << 20));
    r.limits(limits);
    let img = r
        .decode()
        .map_err(|e| Error::format(path, format!("cannot decode image: {e}")))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (channels, data) = match img {
        image::DynamicImage::ImageLuma8(l) => (1, l.into_raw()),
        image::DynamicImage::ImageRgb8(c) => (3, c.into_raw()),
        other => {
            // alpha, 16-bit or float layouts: converted a row at a time
            let mut data = Vec::with_capacity(3 * h * w);
            for y in 0..h {
                data.extend_from_slice(
                    other
                        .crop_imm(0, y as u32, w as u32, 1)
                        .into_rgb8()
                        .as_raw(),
                );
            }
            (3, data)
        }
    };
    Ok(RawImage {
        channels,
        height: h,
        width: w,
        data,
        label: 0,
    })
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
        let (shape, data) = decode_rgb_bounded(path, self.max_pixels)?;
        Ok(Sample::Image(Image {
            shape,
            data,
            label: *label,
        }))
    }
    fn get_raw(&self, i: usize) -> Result<Option<RawImage>> {
        let (path, label) = self.samples.get(i).ok_or_else(|| {
            Error::invalid(
                "ImageFolder::get_raw",
                format!("index {i} of {}", self.samples.len()),
            )
        })?;
        let mut r = decode_raw(path, self.max_pixels)?;
        r.label = *label;
        Ok(Some(r))
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
