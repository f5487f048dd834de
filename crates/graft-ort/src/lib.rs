//! graft-ort: running ONNX graphs (graft-onnx's exports) in ONNX Runtime.
//!
//! Owns: finding and loading an installed ONNX Runtime shared library at run time
//! ([`OnnxRuntime`]: `ORT_DYLIB_PATH`, or the `onnxruntime` wheel of a Python environment — no
//! download, nothing linked at build time) and one inference session over a serialized graph
//! ([`OrtSession`]: CPU provider, every graph optimisation on, intra-op threads set), taking and
//! returning graft's host tensors.
//!
//! Must not know: models, tracing, training, libtorch; it runs whatever graph it is handed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use graft_backend::{DType, TensorData};
use graft_core::{Error, Result};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

/// The ONNX Runtime library this process loaded (one per process: ONNX Runtime allows one
/// environment).
#[derive(Clone)]
pub struct OnnxRuntime {
    env: Environment,
    path: PathBuf,
}

impl std::fmt::Debug for OnnxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxRuntime")
            .field("path", &self.path)
            .finish()
    }
}

/// The library this process loaded (set by the first successful load only: a failed load
/// leaves the process free to load another file).
static LOADED: Mutex<Option<OnnxRuntime>> = Mutex::new(None);

fn backend_err(op: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend {
        op: op.to_string(),
        msg: e.to_string(),
    }
}

impl OnnxRuntime {
    /// Loads the library at `path` (`libonnxruntime.so.<version>`): the first successful call in
    /// a process loads it, later calls return the same runtime, and naming a different file
    /// then is an error.
    pub fn load(path: &Path) -> Result<Self> {
        let mut slot = LOADED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rt) = slot.as_ref() {
            if rt.path == path {
                return Ok(rt.clone());
            }
            return Err(Error::invalid(
                "ONNX Runtime",
                format!(
                    "this process already loaded {}; one ONNX Runtime library per process ({} asked for)",
                    rt.path.display(),
                    path.display()
                ),
            ));
        }
        let fail = |e: &dyn std::fmt::Display| {
            backend_err("loading ONNX Runtime", format!("{}: {e}", path.display()))
        };
        if !path.is_file() {
            return Err(fail(&"no such file"));
        }
        let env = ort::init_from(path)
            .map_err(|e| fail(&e))?
            .with_name("graft")
            .build()
            .map_err(|e| fail(&e))?;
        let rt = OnnxRuntime {
            env,
            path: path.to_path_buf(),
        };
        *slot = Some(rt.clone());
        Ok(rt)
    }

    /// The library this process loaded, if one was.
    pub fn loaded() -> Option<Self> {
        LOADED.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The loaded library, else the one [`OnnxRuntime::find`] finds, loaded now.
    pub fn get_or_load(python_env: Option<&Path>) -> Result<Self> {
        match Self::loaded() {
            Some(rt) => Ok(rt),
            None => Self::load(&Self::find(python_env)?),
        }
    }

    /// Finds the library: `ORT_DYLIB_PATH` (the `ort` crate's variable for it), else the
    /// `onnxruntime` wheel of the Python environment in `VIRTUAL_ENV`, else of `python_env`.
    pub fn find(python_env: Option<&Path>) -> Result<PathBuf> {
        if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        let envs = std::env::var_os("VIRTUAL_ENV")
            .map(PathBuf::from)
            .into_iter()
            .chain(python_env.map(Path::to_path_buf));
        for env in envs {
            if let Some(p) = Self::in_python_env(&env) {
                return Ok(p);
            }
        }
        Err(Error::invalid(
            "ONNX Runtime",
            "no ONNX Runtime library found: `pip install onnxruntime` into a virtual environment \
             (graft looks in $VIRTUAL_ENV's site-packages/onnxruntime/capi), or set ORT_DYLIB_PATH \
             to a libonnxruntime.so",
        ))
    }

    /// The wheel's `onnxruntime/capi/libonnxruntime.so.<version>` under a Python environment.
    pub fn in_python_env(env: &Path) -> Option<PathBuf> {
        let lib = std::fs::read_dir(env.join("lib")).ok()?;
        let mut found: Vec<PathBuf> = lib
            .flatten()
            .map(|py| py.path().join("site-packages/onnxruntime/capi"))
            .filter_map(|capi| std::fs::read_dir(capi).ok())
            .flat_map(|d| d.flatten().map(|e| e.path()))
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with("libonnxruntime.so") || n == "libonnxruntime.dylib"
                })
            })
            .collect();
        found.sort();
        found.pop()
    }

    /// The library file loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionOptions {
    /// Intra-op threads (0: ONNX Runtime's default, one per physical core).
    pub threads: usize,
}

/// One ONNX graph loaded for inference: one f32 input, f32 outputs.
pub struct OrtSession {
    session: Mutex<Session>,
    input: String,
}

impl std::fmt::Debug for OrtSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtSession")
            .field("input", &self.input)
            .finish()
    }
}

impl OrtSession {
    /// Builds a session over the bytes of an `.onnx` file: CPU provider, every graph
    /// optimisation (constant folding, node fusions, the NCHWc layout transform).
    pub fn new(rt: &OnnxRuntime, onnx: &[u8], opts: &SessionOptions) -> Result<Self> {
        let e = |x: ort::Error| backend_err("ONNX Runtime session", x);
        let mut b = Session::builder(&rt.env)
            .map_err(e)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|x| e(x.into()))?;
        if opts.threads > 0 {
            b = b
                .with_intra_threads(opts.threads)
                .map_err(|x| e(x.into()))?
                .with_inter_threads(1)
                .map_err(|x| e(x.into()))?;
        }
        let session = b.commit_from_memory(onnx).map_err(e)?;
        if session.inputs().len() != 1 || session.outputs().is_empty() {
            return Err(Error::invalid(
                "ONNX Runtime session",
                format!(
                    "graft runs graphs of one input and at least one output; this one has {} and {}",
                    session.inputs().len(),
                    session.outputs().len()
                ),
            ));
        }
        let input = session.inputs()[0].name().to_string();
        Ok(Self {
            session: Mutex::new(session),
            input,
        })
    }

    /// Runs the graph on `x` (f32); returns its first output.
    pub fn run(&self, x: &TensorData) -> Result<TensorData> {
        let mut first = None;
        self.run_each(x, |_, shape, values| {
            if first.is_none() {
                first = Some(TensorData::f32(shape, values.to_vec())?);
            }
            Ok(())
        })?;
        let y = first.ok_or_else(|| Error::invalid("ONNX Runtime run", "no output"))?;
        debug_assert_eq!(y.dtype(), DType::F32);
        Ok(y)
    }

    /// Runs the graph on `x` (f32) and hands each output (name, shape, values) to `f` in the
    /// graph's output order, without copying it (what calibration reads dozens of activations
    /// through).
    pub fn run_each(
        &self,
        x: &TensorData,
        mut f: impl FnMut(&str, &[usize], &[f32]) -> Result<()>,
    ) -> Result<()> {
        let e = |x: ort::Error| backend_err("ONNX Runtime run", x);
        let a = x.as_f32("ONNX Runtime run")?.as_standard_layout();
        let data = a
            .as_slice()
            .ok_or_else(|| Error::invalid("ONNX Runtime run", "input not contiguous"))?;
        let shape: Vec<i64> = a.shape().iter().map(|&d| d as i64).collect();
        let t = TensorRef::from_array_view((shape, data)).map_err(e)?;
        let mut s = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let out = s.run(ort::inputs![t]).map_err(e)?;
        for (name, v) in out.iter() {
            let (shape, values) = v.try_extract_tensor::<f32>().map_err(e)?;
            let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            f(name, &shape, values)?;
        }
        Ok(())
    }
}
