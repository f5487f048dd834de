//! The experiment's data: digits, image folders or text files resolved into datasets per
//! split, and the user-model registry the file names.

use super::*;

pub(super) fn registry(
    src: &Source,
    cli_dirs: &[PathBuf],
    toml_dirs: &[Spanned<PathBuf>],
) -> Result<Registry> {
    let mut dirs: Vec<PathBuf> = cli_dirs.to_vec();
    for d in toml_dirs {
        dirs.push(src.existing("model.models_dir", d)?);
    }
    crate::registry(&dirs)
}

pub(super) fn digits_data(src: &Source, d: &crate::exp::DigitsSection) -> Result<Data> {
    let base: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let classes: Vec<usize> = match &d.classes {
        Some(c) => {
            if let Some(bad) = c.get_ref().iter().find(|&&v| v > 9) {
                return Err(src
                    .error(c.span(), format!("digit class {bad}: the digits are 0-9"))
                    .into());
            }
            if c.get_ref().is_empty() {
                return Err(src.error(c.span(), "no digit class kept").into());
            }
            if let Some(d) = c
                .get_ref()
                .iter()
                .enumerate()
                .find_map(|(i, v)| c.get_ref()[..i].contains(v).then_some(v))
            {
                return Err(src
                    .error(c.span(), format!("digit class {d} is listed twice"))
                    .into());
            }
            c.get_ref().clone()
        }
        None => (0..10).collect(),
    };
    let split = fractions(src, d.split.as_ref(), [0.6, 0.2, 0.2])?;
    let parts = stratified_split(&base.labels(), &split, d.seed)?;
    let labels = base.labels();
    let pick = |idx: &[usize]| -> Vec<usize> {
        idx.iter()
            .copied()
            .filter(|&i| classes.contains(&labels[i]))
            .collect()
    };
    let mut train_idx = pick(&parts[0]);
    let all_train = train_idx.clone();
    if let Some(k) = d.k_shot {
        train_idx = k_shot(&labels, &train_idx, k, d.seed)?;
    }
    let unlabeled: Option<Arc<dyn Dataset>> = if d.unlabeled {
        if d.k_shot.is_none() {
            return Err(src
                .table_error(
                    "data.digits",
                    "unlabeled = true takes the train split's images k_shot leaves out: give k_shot",
                )
                .into());
        }
        let rest: Vec<usize> = all_train
            .into_iter()
            .filter(|i| !train_idx.contains(i))
            .collect();
        // the same images with their labels hidden: every sample is class 0 of one class
        Some(Arc::new(graft_data::HiddenLabels::new(Arc::new(
            Subset::new(base.clone(), rest)?,
        ))))
    } else {
        None
    };
    let make = |idx: Vec<usize>| -> Result<Option<Arc<dyn Dataset>>> {
        if idx.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Subset::with_classes(
            base.clone(),
            idx,
            &classes,
        )?)))
    };
    Ok(Data {
        train: make(train_idx)?,
        val: make(pick(&parts[1]))?,
        test: make(pick(&parts[2]))?,
        classes: classes.iter().map(|c| c.to_string()).collect(),
        channels: 1,
        digits: true,
        shift: None,
        text: None,
        unlabeled,
        values: Default::default(),
    })
}

pub(super) fn folder_data(src: &Source, d: &crate::exp::DataSection) -> Result<Data> {
    let mut out = Data {
        train: None,
        val: None,
        test: None,
        classes: Vec::new(),
        channels: 3,
        digits: false,
        shift: None,
        text: None,
        unlabeled: None,
        values: Default::default(),
    };
    if let Some(p) = &d.unlabeled {
        let root = src.existing("data.unlabeled", p)?;
        let mut f =
            ImageFolder::unlabeled(&root).map_err(|e| src.error(p.span(), e.to_string()))?;
        if let Some(m) = d.max_image_pixels {
            f = f.with_max_pixels((m > 0).then_some(m));
        }
        out.unlabeled = Some(Arc::new(f));
    }
    for (key, p) in [("train", &d.train), ("val", &d.val), ("test", &d.test)] {
        let Some(p) = p else { continue };
        let root = src.existing(&format!("data.{key}"), p)?;
        let mut f = ImageFolder::new(&root).map_err(|e| src.error(p.span(), e.to_string()))?;
        if let Some(m) = d.max_image_pixels {
            f = f.with_max_pixels((m > 0).then_some(m));
        }
        if out.classes.is_empty() {
            out.classes = f.classes().to_vec();
        } else if f.classes() != out.classes.as_slice() {
            return Err(src
                .error(
                    p.span(),
                    format!(
                        "data.{key} has classes {:?}, the other splits {:?}",
                        f.classes(),
                        out.classes
                    ),
                )
                .into());
        }
        let ds: Arc<dyn Dataset> = Arc::new(f);
        match key {
            "train" => out.train = Some(ds),
            "val" => out.val = Some(ds),
            _ => out.test = Some(ds),
        }
    }
    Ok(out)
}

/// `[train, val, test]` fractions, checked; when they sum to less than 1 the rest is a fourth
/// part nobody uses (`[0.1, 0.1, 0.2]` leaves 60 % of the data out).
pub(super) fn fractions(
    src: &Source,
    s: Option<&Spanned<Vec<f64>>>,
    default: [f64; 3],
) -> Result<Vec<f64>> {
    let Some(s) = s else {
        return Ok(default.to_vec());
    };
    let v = s.get_ref();
    if v.len() != 3
        || v.iter().any(|f| f.is_nan() || *f < 0.0)
        || v.iter().sum::<f64>() > 1.0 + 1e-9
    {
        return Err(src
            .error(
                s.span(),
                "split is [train, val, test] fractions, each >= 0, summing to at most 1",
            )
            .into());
    }
    let mut v = v.clone();
    let rest = 1.0 - v.iter().sum::<f64>();
    if rest > 1e-9 {
        v.push(rest);
    }
    Ok(v)
}

/// Text data for a text model: `[data.text]` files or `[data.vader]`, tokenised with the model's
/// tokenizer into `TokenDataset`s.
pub(super) fn text_data(
    src: &Source,
    exp_model: &crate::exp::ModelSection,
    reg: &Registry,
    d: &crate::exp::DataSection,
) -> Result<Data> {
    use graft_text::{TextColumns, TextDataset, TokenDataset};
    let entry = reg.get(exp_model.name.get_ref())?;
    let Some(tcfg) = &entry.cfg.text else {
        return Err(src
            .error(
                exp_model.name.span(),
                format!(
                    "{} is an image model: text data needs a text model (minilm_l6)",
                    exp_model.name.get_ref()
                ),
            )
            .into());
    };
    let dir = match &exp_model.dir {
        Some(p) => Some(src.existing("model.dir", p)?),
        None => None,
    };
    let files = graft_zoo::TextModelFiles::locate(tcfg, dir.as_deref())
        .map_err(|e| src.table_error("model", e.to_string()))?;
    let tokenizer = graft_text::Tokenizer::from_file(&files.tokenizer, tcfg.max_length)?;
    let split3 = |all: &TextDataset, f: Vec<f64>, seed: u64| -> Result<[Option<TextDataset>; 3]> {
        let mut parts = all.split(&f, seed)?.into_iter();
        let mut next = || parts.next().filter(|p| !p.is_empty());
        Ok([next(), next(), next()])
    };
    let (mut parts, k, seed) = match (&d.text, &d.vader) {
        (Some(_), Some(_)) => {
            return Err(src
                .table_error("data", "give [data.text] or [data.vader], not both")
                .into());
        }
        (Some(t), None) => {
            let cols = TextColumns {
                text: t.text_column.clone().unwrap_or_else(|| "text".into()),
                label: t.label_column.clone().unwrap_or_else(|| "label".into()),
            };
            let format = match &t.format {
                Some(f) => Some(
                    f.get_ref()
                        .parse::<graft_text::TextFormat>()
                        .map_err(|e| src.error(f.span(), e.to_string()))?,
                ),
                None => None,
            };
            let files_given = t.train.is_some() || t.val.is_some() || t.test.is_some();
            let parts = match (&t.file, files_given) {
                (Some(f), false) => {
                    let path = src.existing("data.text.file", f)?;
                    let all = TextDataset::read(&path, format, &cols, None)?;
                    split3(
                        &all,
                        fractions(src, t.split.as_ref(), [0.7, 0.1, 0.2])?,
                        t.seed,
                    )?
                }
                (None, true) => {
                    if let Some(s) = &t.split {
                        return Err(src
                            .error(s.span(), "split divides data.text.file; the train / val / test files are the splits")
                            .into());
                    }
                    let mut out: [Option<TextDataset>; 3] = [None, None, None];
                    let mut classes: Option<Vec<String>> = None;
                    for (i, (key, p)) in [("train", &t.train), ("val", &t.val), ("test", &t.test)]
                        .into_iter()
                        .enumerate()
                    {
                        let Some(p) = p else { continue };
                        let path = src.existing(&format!("data.text.{key}"), p)?;
                        let ds = TextDataset::read(&path, format, &cols, classes.as_deref())?;
                        classes.get_or_insert_with(|| ds.classes.clone());
                        out[i] = Some(ds);
                    }
                    out
                }
                (Some(f), true) => {
                    return Err(src
                        .error(
                            f.span(),
                            "give data.text.file or train / val / test files, not both",
                        )
                        .into());
                }
                (None, false) => {
                    return Err(src
                        .table_error(
                            "data",
                            "[data.text] needs file = ... or train / val / test files",
                        )
                        .into());
                }
            };
            (parts, t.k_shot, t.seed)
        }
        (None, Some(v)) => {
            let path = match &v.path {
                Some(p) => src.existing("data.vader.path", p)?,
                None => graft_zoo::text::find_installed(Path::new(
                    graft_text::VaderLexicon::PACKAGE_PATH,
                ))
                .map_err(|e| src.table_error("data", format!("{e}; or give data.vader.path")))?,
            };
            let all = TextDataset::vader(&path, v.threshold)?;
            (
                split3(
                    &all,
                    fractions(src, v.split.as_ref(), [0.7, 0.1, 0.2])?,
                    v.seed,
                )?,
                v.k_shot,
                v.seed,
            )
        }
        (None, None) => unreachable!("called for text data only"),
    };
    if let (Some(k), Some(train)) = (k, parts[0].as_ref()) {
        parts[0] = Some(train.k_shot(k, seed)?);
    }
    let classes = parts
        .iter()
        .flatten()
        .next()
        .map(|p| p.classes.clone())
        .unwrap_or_default();
    // the regression values the texts carry (VADER's mean valence), split as the texts are
    let values = parts.each_ref().map(|p| {
        p.as_ref()
            .and_then(|d| d.targets.as_ref())
            .map(|t| t.iter().map(|&v| v as f32).collect())
    });
    let mut sets: Vec<Option<Arc<dyn Dataset>>> = Vec::new();
    for p in &parts {
        sets.push(match p {
            Some(ds) => Some(Arc::new(TokenDataset::new(ds, &tokenizer)?)),
            None => None,
        });
    }
    let mut it = sets.into_iter();
    Ok(Data {
        train: it.next().flatten(),
        val: it.next().flatten(),
        test: it.next().flatten(),
        classes,
        channels: 1,
        digits: false,
        shift: None,
        text: Some(TextInputs { tokenizer, files }),
        unlabeled: None,
        values,
    })
}
