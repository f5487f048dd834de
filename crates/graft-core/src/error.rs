//! The one error type of graft's library crates.

use std::path::PathBuf;

/// Result with graft's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a graft library crate can fail with. Variants name the thing at fault (op, parameter,
/// file, key) so a user can act on the message without a backtrace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Operands of an op have shapes it cannot combine.
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },

    /// An op got a dtype it does not support.
    #[error("{op}: unsupported dtype {dtype}{}", hint_suffix(.hint))]
    DType {
        op: &'static str,
        dtype: String,
        hint: String,
    },

    /// A bad argument that is neither shape nor dtype (a negative kernel size, p outside [0, 1)...).
    #[error("{op}: {msg}")]
    InvalidArgument { op: &'static str, msg: String },

    /// The backend cannot do this at all (for example training on the inference-only ndarray backend).
    #[error("{backend} backend does not support {what}: {why}")]
    Unsupported {
        backend: &'static str,
        what: String,
        why: String,
    },

    /// An error raised inside the tensor library (libtorch), with the op that raised it.
    #[error("{op}: {msg}")]
    Backend { op: String, msg: String },

    /// A parameter or buffer name that is not a valid dotted name.
    #[error("invalid parameter name {name:?}: {why}")]
    InvalidName { name: String, why: String },

    /// Two parameters / buffers with the same dotted name.
    #[error("name collision: {0:?} is already defined")]
    NameCollision(String),

    /// A parameter or buffer that was looked up but does not exist.
    #[error("no parameter or buffer named {0:?}")]
    MissingParam(String),

    /// A selector that cannot be built or resolved (bad regex, unknown stage).
    #[error("selector {selector}: {msg}")]
    Selector { selector: String, msg: String },

    /// Bad optimizer configuration or state.
    #[error("optimizer: {0}")]
    Optimizer(String),

    /// An I/O error on a file, with its path.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A file whose content is malformed, with its path and what is wrong (key, offset, ...).
    #[error("{}: {msg}", .path.display())]
    Format { path: PathBuf, msg: String },

    /// A training run that cannot go on (a non-finite loss, a resume that does not match the
    /// run), with what to do about it.
    #[error("training: {0}")]
    Training(String),

    /// A model name the registry does not know, with the closest names it does.
    #[error("unknown model {name:?}{}", hint_suffix(.hint))]
    UnknownModel { name: String, hint: String },

    /// A weights file that does not fit the model (missing, unexpected or mis-shaped tensors),
    /// with the file and the load report's findings.
    #[error("{}: weights do not fit the model: {msg}", .path.display())]
    Weights { path: PathBuf, msg: String },

    /// A pretrained file that is not in the local cache while downloads are off
    /// (`HF_HUB_OFFLINE`), with the cache searched and the command that fetches it.
    #[error("{what} is not in the cache {} and downloads are off{}", .cache.display(), hint_suffix(.hint))]
    NotCached {
        what: String,
        cache: PathBuf,
        hint: String,
    },

    /// A download that failed: the server said no (status and what it named), the connection
    /// failed past its retries, or the bytes did not match their announced digest. Nothing is
    /// placed in the cache.
    #[error("download {what}: {msg}")]
    Download { what: String, msg: String },
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(" ({hint})")
    }
}

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }
    /// Shorthand for [`Error::DType`].
    pub fn dtype(op: &'static str, dtype: impl std::fmt::Display, hint: impl Into<String>) -> Self {
        Error::DType {
            op,
            dtype: dtype.to_string(),
            hint: hint.into(),
        }
    }
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// A malformed file.
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
