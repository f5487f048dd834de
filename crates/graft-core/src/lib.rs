//! graft-core: the vocabulary every graft crate shares.
//!
//! Owns: the error enum and [`Result`], dotted parameter names ([`name`]) and selectors over those
//! names ([`selector`]) — by exact name, dotted prefix, regex, stage, and their unions and
//! differences — the scores every report reads off a confusion matrix ([`confusion`]), and the
//! bounds on sizes read from files before anything is allocated ([`limits`]).
//!
//! Must not know: tensors, backends, tch, ndarray, file formats or TOML. Everything here is plain
//! data so that every other crate can depend on it without pulling in a tensor library.

pub mod confusion;
pub mod error;
pub mod limits;
pub mod name;
pub mod selector;

pub use error::{Error, Result};
pub use name::{is_under, join, validate_name};
pub use selector::{Selector, Stage, StageTable};
