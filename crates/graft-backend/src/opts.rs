//! Option structs for the ops with many knobs.

/// conv2d options: stride, padding, dilation (each (h, w)) and groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dOpts {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for Conv2dOpts {
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dOpts {
    /// Stride 1, no padding.
    pub fn new() -> Self {
        Self::default()
    }
    /// Same stride on both axes.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    /// Same zero padding on both axes.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }
    /// Same dilation on both axes.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
    /// Groups (`groups == in_channels` is depthwise).
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
}

/// max / avg pool options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dOpts {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    /// Max pool only.
    pub dilation: (usize, usize),
    pub ceil_mode: bool,
    /// Avg pool only: count the zero padding in the divisor (PyTorch's default `true`).
    pub count_include_pad: bool,
}

impl Pool2dOpts {
    /// A square kernel with stride = kernel (PyTorch's default), no padding.
    pub fn new(kernel: usize) -> Self {
        Self {
            kernel: (kernel, kernel),
            stride: (kernel, kernel),
            padding: (0, 0),
            dilation: (1, 1),
            ceil_mode: false,
            count_include_pad: true,
        }
    }
    /// Same stride on both axes.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    /// Same padding on both axes.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }
    /// Same dilation on both axes.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
    /// Output size rounds up instead of down.
    pub fn ceil_mode(mut self, on: bool) -> Self {
        self.ceil_mode = on;
        self
    }
    /// Whether avg pool divides by the full kernel area including padding.
    pub fn count_include_pad(mut self, on: bool) -> Self {
        self.count_include_pad = on;
        self
    }

    /// Output length along one axis, PyTorch's formula (a ceil-mode window must start inside the
    /// input or left padding).
    pub fn out_len(&self, input: usize, axis: usize) -> Option<usize> {
        let (k, s, p, d) = match axis {
            0 => (
                self.kernel.0,
                self.stride.0,
                self.padding.0,
                self.dilation.0,
            ),
            _ => (
                self.kernel.1,
                self.stride.1,
                self.padding.1,
                self.dilation.1,
            ),
        };
        let span = d * (k - 1) + 1;
        let padded = input + 2 * p;
        if padded < span || s == 0 {
            return None;
        }
        let num = padded - span;
        let mut out = if self.ceil_mode {
            num.div_ceil(s) + 1
        } else {
            num / s + 1
        };
        if self.ceil_mode && (out - 1) * s >= input + p {
            out -= 1;
        }
        Some(out)
    }
}

/// gelu flavour: exact (erf) or the tanh approximation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GeluApprox {
    #[default]
    Erf,
    Tanh,
}

/// What batch_norm does with its statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchNormMode {
    /// Normalise with the running statistics; leave them unchanged.
    Eval,
    /// Normalise with the batch's statistics and update the running ones in place:
    /// `running = (1 - momentum) * running + momentum * batch` (unbiased variance), and
    /// `num_batches_tracked += 1`. `momentum: None` is the cumulative average
    /// (`momentum = 1 / num_batches_tracked`), PyTorch's `momentum=None`: BatchNorm re-estimation.
    Train { momentum: Option<f64> },
}

/// The tensors of one BatchNorm layer.
#[derive(Debug, Clone, Copy)]
pub struct BatchNormTensors<'a, T> {
    pub weight: Option<&'a T>,
    pub bias: Option<&'a T>,
    pub running_mean: &'a T,
    pub running_var: &'a T,
    /// i64 scalar; required for cumulative (`momentum: None`) training mode.
    pub num_batches_tracked: Option<&'a T>,
    pub eps: f64,
}

/// Memory layout hint for 4-d activations (speed work; values are the same either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryFormat {
    #[default]
    Contiguous,
    /// NHWC strides with NCHW logical shape (PyTorch's `channels_last`).
    ChannelsLast,
}

/// The scalars of one AdamW update (`torch.optim.AdamW`'s single-tensor algorithm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
    /// The parameter's step count, this update included (1 on the first).
    pub step: u64,
}
