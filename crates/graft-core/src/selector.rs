//! Selectors pick parameters by name: exact, dotted prefix, regex, stage, and combinations.
//!
//! Stages are named layer groups, bottom to top (timm's `group_matcher`): a [`StageTable`] maps a
//! stage name to the dotted prefixes it covers. A model provides its table; selectors that name a
//! stage resolve through it, and name an unknown stage as an error rather than matching nothing.

use regex::Regex;

use crate::name::is_under;
use crate::{Error, Result};

/// One named layer group: the dotted prefixes it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    pub prefixes: Vec<String>,
}

/// Stages of a model, bottom (input side) to top (head).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageTable {
    stages: Vec<Stage>,
}

impl StageTable {
    /// Builds a table; stage names must be unique.
    pub fn new(stages: Vec<Stage>) -> Result<Self> {
        for (i, s) in stages.iter().enumerate() {
            if stages[..i].iter().any(|o| o.name == s.name) {
                return Err(Error::Selector {
                    selector: format!("stage {:?}", s.name),
                    msg: "stage defined twice".into(),
                });
            }
        }
        Ok(Self { stages })
    }
    /// The stages, bottom to top.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }
    /// Index of the named stage.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }
    /// The stage a parameter belongs to: the stage whose longest prefix covers it.
    pub fn stage_of(&self, param: &str) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (i, s) in self.stages.iter().enumerate() {
            for p in &s.prefixes {
                if is_under(param, p) && best.is_none_or(|(_, len)| p.len() > len) {
                    best = Some((i, p.len()));
                }
            }
        }
        best.map(|(i, _)| i)
    }
}

/// A predicate over dotted parameter names.
#[derive(Debug, Clone)]
pub enum Selector {
    /// Every name.
    All,
    /// No name.
    Nothing,
    /// Exactly this name.
    Exact(String),
    /// This dotted prefix (segment boundaries: `layer1` does not cover `layer10`).
    Prefix(String),
    /// Names the regex matches (anywhere; anchor it with `^…$` for a full match).
    Regex(Regex),
    /// Every parameter of the named stage.
    Stage(String),
    /// The first `n` stages (fastai's `freeze_to(n)` meaning: stages `0..n`).
    FirstStages(usize),
    /// Names any of these select.
    Any(Vec<Selector>),
    /// Names the first selects and the second does not.
    Except(Box<Selector>, Box<Selector>),
}

impl Selector {
    /// A regex selector; a bad pattern is an error naming it.
    pub fn regex(pattern: &str) -> Result<Self> {
        Regex::new(pattern)
            .map(Selector::Regex)
            .map_err(|e| Error::Selector {
                selector: format!("regex {pattern:?}"),
                msg: e.to_string(),
            })
    }

    /// `self` minus `other`.
    pub fn except(self, other: Selector) -> Self {
        Selector::Except(Box::new(self), Box::new(other))
    }

    /// Checks that every stage this selector names exists in `stages`.
    pub fn validate(&self, stages: &StageTable) -> Result<()> {
        match self {
            Selector::Stage(s) if stages.index_of(s).is_none() => Err(Error::Selector {
                selector: format!("stage {s:?}"),
                msg: format!(
                    "unknown stage; the model has: {}",
                    stages
                        .stages()
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            Selector::FirstStages(n) if *n > stages.stages().len() => Err(Error::Selector {
                selector: format!("first {n} stages"),
                msg: format!("the model has only {} stages", stages.stages().len()),
            }),
            Selector::Any(v) => v.iter().try_for_each(|s| s.validate(stages)),
            Selector::Except(a, b) => {
                a.validate(stages)?;
                b.validate(stages)
            }
            _ => Ok(()),
        }
    }

    /// Does this selector pick `name`? Stage selectors resolve through `stages`; call
    /// [`Selector::validate`] first to turn an unknown stage into an error.
    pub fn matches(&self, name: &str, stages: &StageTable) -> bool {
        match self {
            Selector::All => true,
            Selector::Nothing => false,
            Selector::Exact(n) => n == name,
            Selector::Prefix(p) => is_under(name, p),
            Selector::Regex(r) => r.is_match(name),
            Selector::Stage(s) => stages
                .index_of(s)
                .is_some_and(|i| stages.stage_of(name) == Some(i)),
            Selector::FirstStages(n) => stages.stage_of(name).is_some_and(|i| i < *n),
            Selector::Any(v) => v.iter().any(|s| s.matches(name, stages)),
            Selector::Except(a, b) => a.matches(name, stages) && !b.matches(name, stages),
        }
    }

    /// The names of `names` this selector picks, in order.
    pub fn select<'a, I>(&self, names: I, stages: &StageTable) -> Result<Vec<&'a str>>
    where
        I: IntoIterator<Item = &'a str>,
    {
        self.validate(stages)?;
        Ok(names
            .into_iter()
            .filter(|n| self.matches(n, stages))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resnet_like() -> StageTable {
        let st = |n: &str, p: &[&str]| Stage {
            name: n.into(),
            prefixes: p.iter().map(|s| s.to_string()).collect(),
        };
        StageTable::new(vec![
            st("stem", &["conv1", "bn1"]),
            st("layer1", &["layer1"]),
            st("layer2", &["layer2"]),
            st("head", &["fc"]),
        ])
        .expect("unique stages")
    }

    const NAMES: [&str; 6] = [
        "conv1.weight",
        "bn1.weight",
        "layer1.0.conv1.weight",
        "layer1.0.bn1.bias",
        "layer2.0.conv1.weight",
        "fc.weight",
    ];

    #[test]
    fn stages_and_first_stages() {
        let t = resnet_like();
        let sel = Selector::FirstStages(2).select(NAMES, &t).expect("valid");
        assert_eq!(
            sel,
            [
                "conv1.weight",
                "bn1.weight",
                "layer1.0.conv1.weight",
                "layer1.0.bn1.bias"
            ]
        );
        let head = Selector::Stage("head".into())
            .select(NAMES, &t)
            .expect("valid");
        assert_eq!(head, ["fc.weight"]);
    }

    #[test]
    fn except_and_regex() {
        let t = resnet_like();
        let no_bn = Selector::FirstStages(2).except(Selector::regex(r"(^|\.)bn\d*\.").expect("re"));
        assert_eq!(
            no_bn.select(NAMES, &t).expect("valid"),
            ["conv1.weight", "layer1.0.conv1.weight"]
        );
    }

    #[test]
    fn unknown_stage_is_an_error_naming_the_stages() {
        let t = resnet_like();
        let err = Selector::Stage("layer9".into())
            .select(NAMES, &t)
            .expect_err("unknown");
        let msg = err.to_string();
        assert!(
            msg.contains("layer9") && msg.contains("stem, layer1, layer2, head"),
            "{msg}"
        );
        assert!(Selector::FirstStages(5).select(NAMES, &t).is_err());
        assert!(Selector::regex("(").is_err());
        let dup = StageTable::new(vec![
            Stage {
                name: "a".into(),
                prefixes: vec![],
            },
            Stage {
                name: "a".into(),
                prefixes: vec![],
            },
        ]);
        assert!(dup.is_err());
    }

    #[test]
    fn longest_prefix_wins() {
        let t = StageTable::new(vec![
            Stage {
                name: "blocks".into(),
                prefixes: vec!["blocks".into()],
            },
            Stage {
                name: "last".into(),
                prefixes: vec!["blocks.11".into()],
            },
        ])
        .expect("unique");
        assert_eq!(t.stage_of("blocks.3.mlp.fc1.weight"), Some(0));
        assert_eq!(t.stage_of("blocks.11.mlp.fc1.weight"), Some(1));
        assert_eq!(t.stage_of("head.weight"), None);
    }
}
