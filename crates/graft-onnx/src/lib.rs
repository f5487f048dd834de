//! graft-onnx: graft models as ONNX graphs, by tracing.
//!
//! Owns: [`Trace`], a [`graft_backend::Backend`] whose tensors are names in a graph being
//! written — running a model's forward on it records each op as ONNX nodes (opset
//! [`trace::OPSET`]) with shapes computed on the way; [`export`], which rebuilds a zoo model on
//! it and writes the recorded graph with the model's parameters as named initializers; and the
//! protobuf messages of the ONNX format it writes ([`proto`]). Any architecture the zoo runs
//! exports, with no per-family code: the graph is the model code's own op sequence.
//!
//! Must not know: model families, libtorch, ONNX Runtime (running a graph is the caller's
//! business), files other than the `.onnx` it writes, training.

mod export;
mod graph;
pub mod proto;
pub mod quant;
pub mod trace;

pub use export::{Exported, IR_VERSION, Output, export};
pub use trace::{Trace, Value};
