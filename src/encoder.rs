//! The image encoder: any ONNX model run by ONNX Runtime (the `ort` crate, loading
//! `libonnxruntime.so` at run time), on CPU or through CUDA.
//!
//! Everything that can be wrong with a model (its input's rank, channels, size, batch, the
//! output's shape, a library that will not load, CUDA that is not there) is found when the
//! encoder is loaded, before any image is decoded: a build never crashes halfway through.
//! Embeddings are L2-normalised, so inner product is cosine similarity downstream; a row
//! that cannot be (all zeros) comes back NaN, so the file is skipped like a NaN one.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::Session;
use ort::value::TensorRef;

use crate::error::{backticked, EncoderError};

/// The ONNX Runtime release the setup script installs and this build targets.
pub const ORT_VERSION: &str = "1.31.1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// CUDA when the library and a GPU are there, else CPU (and the log says why).
    Auto,
    Cpu,
    Cuda,
}

/// What the config says about the encoder; every field but `model` may be left to the
/// model's metadata (`simsite.*` properties) or its graph.
#[derive(Debug, Clone, Default)]
pub struct EncoderSettings {
    pub model: PathBuf,
    pub device: Option<Device>,
    pub batch: Option<usize>,
    pub threads: Option<usize>,
    pub library: Option<PathBuf>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub channels: Option<u32>,
    pub size: Option<u32>,
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
}

/// The resolved input contract of a loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub input: String,
    pub output: String,
    pub channels: u32,
    pub size: u32,
    /// Per channel; applied as `(x - mean) / std` to the [0, 1] preprocessed pixels.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub dim: usize,
    pub batch: usize,
    /// The model's batch dimension is fixed (then `batch` is that size).
    pub fixed_batch: bool,
    pub name: String,
}

impl InputSpec {
    /// Everything about the input contract that changes embeddings, for cache keys.
    pub fn digest_text(&self) -> String {
        format!(
            "in={}|out={}|c={}|s={}|mean={:?}|std={:?}|dim={}",
            self.input, self.output, self.channels, self.size, self.mean, self.std, self.dim
        )
    }
}

pub struct Encoder {
    session: Session,
    pub spec: InputSpec,
    /// blake3 of the model file's bytes.
    pub digest: blake3::Hash,
    /// "CPU" or "CUDA", as actually used.
    pub device: &'static str,
    /// Why `auto` chose what it chose (for the log).
    pub device_note: String,
    /// ONNX Runtime threads of this session.
    pub threads: usize,
    /// What the log should say about the model that is not an error (an unknown
    /// `simsite.*` metadata key).
    pub warnings: Vec<String>,
    /// Size of the model file.
    model_bytes: u64,
    /// What it was loaded from, for [`Encoder::cpu_workers`].
    settings: EncoderSettings,
    scratch: Vec<f32>,
}

/// The most model bytes that single-threaded copies of an encoder may hold together.
pub const REPLICA_MODEL_BYTES: u64 = 1 << 30;

/// How to load one more copy of an encoder already loaded (see [`Encoder::cpu_workers`]):
/// it can be sent to the thread that will run it, which then loads it there.
#[derive(Debug, Clone)]
pub struct Replica {
    settings: EncoderSettings,
    dim: usize,
    /// The model's digest when first loaded: a copy must be that same model.
    digest: blake3::Hash,
}

impl Replica {
    /// Loads the copy (without the probe batch: the model was checked when first loaded).
    /// A model file replaced since then is an error, not embeddings from another model
    /// under the first one's cache key.
    pub fn load(&self) -> Result<Encoder, EncoderError> {
        Encoder::load_with(&self.settings, Some((self.dim, self.digest)))
    }
}

/// Where `libonnxruntime.so` is looked for, in order: the config, `ORT_DYLIB_PATH`, the
/// folder `scripts/setup.sh` unpacks it to.
pub fn library_candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = configured {
        v.push(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        v.push(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("SIMSITE_ORT_DIR") {
        v.push(PathBuf::from(d).join(format!("libonnxruntime.so.{ORT_VERSION}")));
    }
    // The home folder from `HOME`, else from the password database: a job started with
    // `env -i` (or by a scheduler that passes no environment) has no `HOME`.
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().filter(|h| !h.as_os_str().is_empty()).map(|h| h.join(".cache")));
    if let Some(c) = cache {
        v.push(c.join(format!("simsite/onnxruntime-{ORT_VERSION}/libonnxruntime.so.{ORT_VERSION}")));
    }
    v
}

/// ONNX Runtime is loaded once per process (the library's own global state); later calls
/// get the first outcome.
static RUNTIME: OnceLock<Result<(PathBuf, ort::environment::Environment), String>> = OnceLock::new();

fn load_runtime(configured: Option<&Path>) -> Result<(PathBuf, ort::environment::Environment), EncoderError> {
    RUNTIME
        .get_or_init(|| {
            // A library named in the config is meant: a typo there must not quietly load
            // another one.
            if let Some(p) = configured.filter(|p| !p.is_file()) {
                return Err(format!("`onnxruntime` under [encoder] names {}, which is not a file", p.display()));
            }
            let candidates = library_candidates(configured);
            if candidates.is_empty() {
                return Err("found no folder to look in: ORT_DYLIB_PATH, SIMSITE_ORT_DIR, XDG_CACHE_HOME and HOME are unset, and the password database names no home folder for this user".into());
            }
            let Some(found) = candidates.iter().find(|p| p.is_file()) else {
                return Err(format!(
                    "looked in: {}",
                    candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                ));
            };
            match ort::init_from(found) {
                Ok(builder) => match builder.with_name("simsite").build() {
                    Ok(env) => {
                        // ONNX Runtime's own log goes to stderr in colour, even under --quiet;
                        // every error it logs is also returned, and simsite reports it.
                        env.set_log_level(ort::logging::LogLevel::Fatal);
                        Ok((found.clone(), env))
                    }
                    Err(e) => Err(format!("{} loaded, but its environment failed: {e}", found.display())),
                },
                Err(e) => Err(format!("{} could not be loaded: {e}", found.display())),
            }
        })
        .clone()
        .map_err(|detail| EncoderError::NoRuntime { detail })
}

/// The `simsite.*` metadata keys simsite reads (the first six), or writes for people and
/// tools (training/export.py); any other `simsite.` key is probably a typo, and warned about.
/// Why a file whose embedding is zero or NaN is not placed (the build skips it, `query`
/// answers it with this).
pub const NO_DIRECTION: &str = "the model's embedding of this image is zero or not a number (NaN or infinite), so it has no direction to compare";

pub const METADATA_KEYS: [&str; 11] =
    ["input", "output", "channels", "size", "mean", "std", "name", "dim", "recipe", "training_data_digest", "license"];

/// The input sizes simsite feeds, as `[encoder] size` allows.
const SIZES: std::ops::RangeInclusive<u32> = 8..=1024;

/// Where a value of the input contract came from, for errors that say which to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Config,
    Metadata,
    Graph,
}

impl Source {
    fn describe(self, key: &str) -> String {
        match self {
            Source::Config => format!("`{key}` under [encoder]"),
            Source::Metadata => format!("the model's metadata `simsite.{key}`"),
            Source::Graph => "the graph".into(),
        }
    }

}

fn meta(session: &Session, key: &str) -> Option<String> {
    session.metadata().ok().and_then(|m| m.custom(&format!("simsite.{key}")))
}

/// Every value finite, and above 0 where `positive`; `None` if any is not.
fn parse_floats(text: &str, positive: bool) -> Option<Vec<f32>> {
    text.split(',')
        .map(|t| t.trim().parse::<f32>().ok().filter(|v| v.is_finite() && (!positive || *v > 0.0)))
        .collect()
}

fn per_channel(v: Vec<f32>, channels: u32, what: &str, source: Source, model: &Path) -> Result<Vec<f32>, EncoderError> {
    match v.len() {
        1 => Ok(vec![v[0]; channels as usize]),
        n if n == channels as usize => Ok(v),
        n => Err(EncoderError::Mismatch {
            model: model.to_path_buf(),
            message: format!("{what} (from {}) has {n} values but the input has {channels} channel(s)", source.describe(what)),
            fix: match source {
                Source::Metadata => format!(
                    "give `simsite.{what}` in the model's metadata one value, or one per channel ({channels}), or set `{what}` under [encoder], which wins over it"
                ),
                _ => format!("give `{what}` under [encoder] one value, or one per channel ({channels})"),
            },
        }),
    }
}

impl Encoder {
    pub fn load(s: &EncoderSettings) -> Result<Encoder, EncoderError> {
        Encoder::load_with(s, None)
    }

    /// `known`: the output size and digest of this model, from loading it once (then no
    /// probe batch is run, and other bytes in the file are an error).
    fn load_with(s: &EncoderSettings, known: Option<(usize, blake3::Hash)>) -> Result<Encoder, EncoderError> {
        let (library, env) = load_runtime(s.library.as_deref())?;
        let bytes = std::fs::read(&s.model).map_err(|e| EncoderError::ModelIo { model: s.model.clone(), source: e })?;
        let digest = blake3::hash(&bytes);
        if known.is_some_and(|(_, first)| first != digest) {
            return Err(EncoderError::Model {
                model: s.model.clone(),
                message: "the model file changed while the build ran; run the build again".into(),
            });
        }
        let ort_err = |e: ort::Error| EncoderError::Model { model: s.model.clone(), message: e.to_string() };

        let threads = s.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let mut builder = Session::builder(&env).map_err(ort_err)?;
        builder = builder.with_intra_threads(threads).map_err(|e| ort_err(e.into()))?;
        // ORT's workers keep their default spin-waiting: measured with benches/embed.rs, turning
        // it off lowered both raw throughput (1014 → 839 img/s) and the embed stage's (728 → 603).
        let cuda_lib = library.with_file_name("libonnxruntime_providers_cuda.so");
        let (device, device_note) = match s.device.unwrap_or(Device::Auto) {
            Device::Cpu => ("CPU", "device = cpu".to_string()),
            Device::Cuda => {
                let ep = ort::ep::CUDA::default().build().error_on_failure();
                builder = builder.with_execution_providers([ep]).map_err(|e| EncoderError::Cuda {
                    message: format!(
                        "{e} (needs onnxruntime-gpu's {}, CUDA 13, cuDNN 9 and a GPU)",
                        cuda_lib.display()
                    ),
                })?;
                ("CUDA", "device = cuda".to_string())
            }
            Device::Auto if !cuda_lib.is_file() => {
                ("CPU", format!("auto: CPU, since there is no CUDA provider library {}", cuda_lib.display()))
            }
            Device::Auto => {
                let ep = ort::ep::CUDA::default().build().error_on_failure();
                match builder.clone().with_execution_providers([ep]) {
                    Ok(b) => {
                        builder = b;
                        ("CUDA", "auto: CUDA execution provider".to_string())
                    }
                    Err(e) => ("CPU", format!("auto: CPU, since CUDA could not be used: {e}")),
                }
            }
        };
        let session = builder.commit_from_memory(&bytes).map_err(ort_err)?;
        let model = s.model.as_path();
        let mismatch = |message: String, fix: String| EncoderError::Mismatch { model: model.to_path_buf(), message, fix };
        // A metadata value is read only where [encoder] does not set the key (which wins),
        // and one that is there must be right: ignoring it would feed the model other input.
        let bad_meta = |key: &str, value: &str, expected: String| EncoderError::Metadata {
            model: model.to_path_buf(),
            key: key.to_string(),
            value: value.to_string(),
            expected,
        };
        let mut warnings = Vec::new();
        let custom_keys = session.metadata().ok().and_then(|m| m.custom_keys().ok()).unwrap_or_default();
        for k in custom_keys.iter().filter(|k| k.strip_prefix("simsite.").is_some_and(|leaf| !METADATA_KEYS.contains(&leaf))) {
            warnings.push(format!(
                "the model {} has metadata key `{k}`, which simsite does not know and ignores; known keys: {}",
                model.display(),
                backticked(METADATA_KEYS.iter().map(|k| format!("simsite.{k}")))
            ));
        }
        // Each value of the input contract with where it came from.
        let sourced = |set: Option<String>, key: &str| match set {
            Some(v) => Some((v, Source::Config)),
            None => meta(&session, key).map(|v| (v, Source::Metadata)),
        };

        // Input: the configured name, else the metadata's, else the model's only input.
        let names = |v: &[ort::value::Outlet]| backticked(v.iter().map(|i| i.name()));
        let (input_name, input_source) = match sourced(s.input.clone(), "input") {
            Some(n) => n,
            None if session.inputs().len() == 1 => (session.inputs()[0].name().to_string(), Source::Graph),
            None => {
                return Err(mismatch(
                    format!("it has {} inputs ({}) and nothing names the image input", session.inputs().len(), names(session.inputs())),
                    "set `input` under [encoder] to the image input's name".into(),
                ))
            }
        };
        let Some(input) = session.inputs().iter().find(|i| i.name() == input_name) else {
            return Err(mismatch(
                format!("it has no input `{input_name}` (named by {}); its inputs are {}", input_source.describe("input"), names(session.inputs())),
                match input_source {
                    Source::Metadata => "correct `simsite.input` in the model's metadata, or set `input` under [encoder], which wins over it".into(),
                    _ => "set `input` under [encoder] to one of those".into(),
                },
            ));
        };
        let ort::value::ValueType::Tensor { ty, shape, .. } = input.dtype() else {
            return Err(mismatch(format!("input `{input_name}` is not a tensor"), "export the model with a float32 NCHW tensor as its image input".into()));
        };
        if *ty != ort::value::TensorElementType::Float32 {
            return Err(mismatch(
                format!("input `{input_name}` is {}; simsite feeds float32", format!("{ty:?}").to_lowercase()),
                "export the model with a float32 input (or add a Cast at the input)".into(),
            ));
        }
        let dims: Vec<i64> = shape.iter().copied().collect();
        if dims.len() != 4 {
            return Err(mismatch(
                format!(
                    "input `{input_name}` has rank {} ({dims:?}); simsite feeds NCHW images (rank 4: batch, channels, height, width)",
                    dims.len()
                ),
                "export the model with a [batch, channels, height, width] input (an Unsqueeze at the input makes one of a [batch, height, width] input)".into(),
            ));
        }
        // A channel count last, and another (or none) where NCHW has it: channels-last.
        if (dims[3] == 1 || dims[3] == 3) && dims[1] != dims[3] {
            return Err(mismatch(
                format!("input `{input_name}` is {dims:?}, which looks like channels-last (NHWC) [N,H,W,C]; simsite feeds NCHW"),
                "export channels-first or add a Transpose at the input".into(),
            ));
        }
        if dims[2] > 0 && dims[3] > 0 && dims[2] != dims[3] {
            return Err(mismatch(
                format!("input `{input_name}` is {}x{}; simsite feeds square images", dims[3], dims[2]),
                "export the model for square images (height equal to width)".into(),
            ));
        }
        // Every input the model needs must be fed; simsite feeds one.
        let others: Vec<&str> = session.inputs().iter().map(|i| i.name()).filter(|n| *n != input_name).collect();
        if !others.is_empty() {
            return Err(mismatch(
                format!("it has input(s) {} besides the image input `{input_name}`; simsite feeds only that one", backticked(&others)),
                "export the model with the image as its only input (make the others constants or initializers)".into(),
            ));
        }
        let graph_channels = (dims[1] > 0).then_some(dims[1] as u32);
        let graph_size = (dims[2] > 0).then_some(dims[2] as u32);
        let channels = match s.channels {
            Some(c) => Some((c, Source::Config)),
            None => match meta(&session, "channels") {
                Some(v) => match v.trim() {
                    "1" => Some((1, Source::Metadata)),
                    "3" => Some((3, Source::Metadata)),
                    _ => return Err(bad_meta("simsite.channels", &v, "1 or 3".into())),
                },
                None => graph_channels.map(|c| (c, Source::Graph)),
            },
        };
        let Some((channels, channels_source)) = channels else {
            return Err(mismatch(
                format!("input `{input_name}` has no fixed channel count, and neither [encoder] nor the model's metadata gives one"),
                "set `channels` under [encoder] (or `simsite.channels` in the model's metadata)".into(),
            ));
        };
        let size = match s.size {
            Some(v) => Some((v, Source::Config)),
            None => match meta(&session, "size") {
                Some(v) => match v.trim().parse::<u32>() {
                    Ok(n) if SIZES.contains(&n) => Some((n, Source::Metadata)),
                    _ => return Err(bad_meta("simsite.size", &v, format!("a whole number of pixels from {} to {}", SIZES.start(), SIZES.end()))),
                },
                None => graph_size.map(|v| (v, Source::Graph)),
            },
        };
        let Some((size, size_source)) = size else {
            return Err(mismatch(
                format!("input `{input_name}` has no fixed size, and neither [encoder] nor the model's metadata gives one"),
                "set `size` under [encoder] (or `simsite.size` in the model's metadata)".into(),
            ));
        };
        if !(channels == 1 || channels == 3) {
            return Err(mismatch(
                format!("{channels} input channels (from {}); simsite feeds 1 (grey) or 3 (RGB)", channels_source.describe("channels")),
                match channels_source {
                    Source::Graph => "export the model for 1 or 3 input channels".into(),
                    _ => "set `channels` under [encoder] to 1 or 3".into(),
                },
            ));
        }
        if let Some(g) = graph_channels.filter(|g| *g != channels) {
            return Err(mismatch(
                format!("input `{input_name}` takes {g} channel(s), but {} says {channels}", channels_source.describe("channels")),
                match channels_source {
                    Source::Metadata => format!("correct `simsite.channels` in the model's metadata to {g}, or set `channels = {g}` under [encoder], which wins over it"),
                    _ => format!("remove `channels` under [encoder] or set it to {g}"),
                },
            ));
        }
        if let Some(g) = graph_size.filter(|g| *g != size) {
            return Err(mismatch(
                format!("input `{input_name}` takes {g}x{g} images, but {} says {size}", size_source.describe("size")),
                match size_source {
                    Source::Metadata => format!("correct `simsite.size` in the model's metadata to {g}, or set `size = {g}` under [encoder], which wins over it"),
                    _ => format!("remove `size` under [encoder] or set it to {g}"),
                },
            ));
        }
        // As `[encoder] size` is checked: a size beyond it (a model of any size told 2000)
        // would have the probe batch alone take gigabytes.
        if !SIZES.contains(&size) {
            let (lo, hi) = (SIZES.start(), SIZES.end());
            return Err(match size_source {
                Source::Graph => mismatch(
                    format!("input `{input_name}` is {size}x{size}; simsite feeds {lo} to {hi} pixels"),
                    format!("export the model for a square input of {lo} to {hi} pixels"),
                ),
                _ => mismatch(
                    format!("size {size} (from {}) is out of range; simsite feeds {lo} to {hi} pixels", size_source.describe("size")),
                    format!("set `size` under [encoder] to {lo} to {hi}"),
                ),
            });
        }
        let (batch, fixed_batch) = match (dims[0], s.batch) {
            (b, None) if b > 0 => (b as usize, true),
            (b, Some(want)) if b > 0 && want as i64 != b => {
                return Err(mismatch(
                    format!("its batch size is fixed to {b}, but `batch = {want}` is configured"),
                    format!("remove `batch` under [encoder] or set it to {b}"),
                ))
            }
            (b, Some(_)) if b > 0 => (b as usize, true),
            (_, Some(want)) => (want.max(1), false),
            // Sized for the device: 64 keeps both CPU cores' caches warm (benches/embed.rs);
            // a GPU needs far more images per call to be busy.
            (_, None) if device == "CUDA" => (512, false),
            (_, None) => (64, false),
        };
        // Normalisation: per channel, from [encoder], else the metadata, else none.
        let norm = |key: &str, set: Option<Vec<f32>>, default: f32| -> Result<Vec<f32>, EncoderError> {
            let positive = key == "std";
            let (v, source) = match set {
                Some(v) => (v, Source::Config),
                None => match meta(&session, key) {
                    None => return Ok(vec![default; channels as usize]),
                    Some(text) => match parse_floats(&text, positive) {
                        Some(v) => (v, Source::Metadata),
                        None => {
                            let mut expected = match positive {
                                true => "numbers above 0",
                                false => "finite numbers",
                            }
                            .to_string()
                                + " separated by commas, one for all channels or one per channel";
                            if text.trim().eq_ignore_ascii_case("imagenet") {
                                expected += "; named presets are not supported (ImageNet's mean is 0.485,0.456,0.406 and its std 0.229,0.224,0.225)";
                            }
                            return Err(bad_meta(&format!("simsite.{key}"), &text, expected));
                        }
                    },
                },
            };
            if !v.iter().all(|x| x.is_finite() && (!positive || *x > 0.0)) {
                return Err(mismatch(
                    format!("{key} {v:?} (from {}) must be finite numbers{}", source.describe(key), if positive { " above 0" } else { "" }),
                    format!("correct `{key}` under [encoder]"),
                ));
            }
            per_channel(v, channels, key, source, model)
        };
        let mean = norm("mean", s.mean.clone(), 0.0)?;
        let std = norm("std", s.std.clone(), 1.0)?;
        let (output_name, output_source) = match sourced(s.output.clone(), "output") {
            Some(n) => n,
            None => session
                .outputs()
                .first()
                .map(|o| (o.name().to_string(), Source::Graph))
                .ok_or_else(|| mismatch("it has no output".into(), "export the model with the embedding as its output".into()))?,
        };
        let Some(output) = session.outputs().iter().find(|o| o.name() == output_name) else {
            return Err(mismatch(
                format!("it has no output `{output_name}` (named by {}); its outputs are {}", output_source.describe("output"), names(session.outputs())),
                match output_source {
                    Source::Metadata => "correct `simsite.output` in the model's metadata, or set `output` under [encoder], which wins over it".into(),
                    _ => "set `output` under [encoder] to one of those".into(),
                },
            ));
        };
        if let ort::value::ValueType::Tensor { ty, shape, .. } = output.dtype() {
            if *ty != ort::value::TensorElementType::Float32 {
                return Err(mismatch(
                    format!("output `{output_name}` is {}; simsite reads float32", format!("{ty:?}").to_lowercase()),
                    "export the embedding as float32 (add a Cast to float at the output)".into(),
                ));
            }
            // [batch, dim, 1, 1] (pooled, not flattened) is [batch, dim].
            if shape.len() < 2 || shape.iter().skip(2).any(|d| *d != 1) {
                return Err(mismatch(
                    format!(
                        "output `{output_name}` is {:?}; simsite needs [batch, dimension] (any dimensions after those must be 1)",
                        shape.iter().collect::<Vec<_>>()
                    ),
                    "flatten or squeeze the output to [batch, dimension] in the export (e.g. a Flatten after the pooling)".into(),
                ));
            }
        } else {
            return Err(mismatch(format!("output `{output_name}` is not a tensor"), "export the model with a float32 [batch, dimension] tensor as its output".into()));
        }
        let name = meta(&session, "name")
            .or_else(|| s.model.file_stem().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into());
        let mut enc = Encoder {
            session,
            spec: InputSpec {
                input: input_name,
                output: output_name,
                channels,
                size,
                mean,
                std,
                dim: 0,
                batch,
                fixed_batch,
                name,
            },
            digest,
            device,
            device_note,
            threads,
            warnings,
            model_bytes: bytes.len() as u64,
            settings: s.clone(),
            scratch: Vec::new(),
        };
        if let Some((dim, _)) = known {
            enc.spec.dim = dim;
            return Ok(enc);
        }
        // One real batch now: a model that cannot run, or whose output is not
        // [batch, dim], fails here rather than after an hour of decoding.
        let n = enc.spec.channels as usize * (size as usize).pow(2);
        let probe = vec![0.5f32; n];
        let probe_err = |message: String| EncoderError::Probe {
            model: model.to_path_buf(),
            message,
            shape: format!("[{batch}, {channels}, {size}, {size}]"),
        };
        let out = enc.run_batch(&probe, 1).map_err(|e| match e {
            EncoderError::Run { message, .. } => probe_err(message),
            e => e,
        })?;
        enc.spec.dim = out.len();
        if enc.spec.dim == 0 {
            return Err(probe_err(format!("output `{}` is empty", enc.spec.output)));
        }
        Ok(enc)
    }

    /// On CPU with more than one thread: how to load single-threaded copies of this
    /// encoder, one per thread, to run batches side by side. One session splitting each
    /// operator over its threads makes them wait for each other at every operator; while
    /// decoding shares the cores, one of them is often descheduled and the others spin.
    /// Separate single-threaded sessions never wait for each other. `None` on CUDA, with
    /// one thread, or when the copies would hold more than [`REPLICA_MODEL_BYTES`] of
    /// model between them (a large model on many cores stays one session).
    pub fn cpu_workers(&self) -> Option<Vec<Replica>> {
        if self.device != "CPU" || self.threads < 2 || self.model_bytes.saturating_mul(self.threads as u64) > REPLICA_MODEL_BYTES {
            return None;
        }
        let settings = EncoderSettings { threads: Some(1), device: Some(Device::Cpu), ..self.settings.clone() };
        Some((0..self.threads).map(|_| Replica { settings: settings.clone(), dim: self.spec.dim, digest: self.digest }).collect())
    }

    /// Floats per image in the input tensor.
    pub fn image_len(&self) -> usize {
        self.spec.channels as usize * (self.spec.size as usize).pow(2)
    }

    /// Embeds `n` preprocessed images (`n × channels × size × size`, values in [0, 1]).
    /// Returns `n × dim` L2-normalised floats. Batches are always run full (padded with
    /// zero images), so every image goes through the same kernels whatever its neighbours
    /// in the batch: identical inputs give bit-identical embeddings in any build order.
    pub fn embed(&mut self, pixels: &[f32], n: usize) -> Result<Vec<f32>, EncoderError> {
        let per = self.image_len();
        debug_assert_eq!(pixels.len(), n * per);
        let mut out = Vec::with_capacity(n * self.spec.dim);
        for start in (0..n).step_by(self.spec.batch) {
            let m = (n - start).min(self.spec.batch);
            let e = self.run_batch(&pixels[start * per..(start + m) * per], m)?;
            out.extend_from_slice(&e);
        }
        Ok(out)
    }

    fn run_batch(&mut self, pixels: &[f32], m: usize) -> Result<Vec<f32>, EncoderError> {
        let per = self.image_len();
        let b = self.spec.batch;
        let plane = (self.spec.size as usize).pow(2);
        self.scratch.clear();
        self.scratch.resize(b * per, 0.0);
        for i in 0..m {
            for c in 0..self.spec.channels as usize {
                let (mean, std) = (self.spec.mean[c], self.spec.std[c]);
                let src = &pixels[i * per + c * plane..i * per + (c + 1) * plane];
                let dst = &mut self.scratch[i * per + c * plane..i * per + (c + 1) * plane];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = (s - mean) / std;
                }
            }
        }
        let model = || self.spec.name.clone();
        let run_err = |e: ort::Error| EncoderError::Run { model: model(), message: e.to_string() };
        let s = self.spec.size as i64;
        let shape = [b as i64, self.spec.channels as i64, s, s];
        let tensor = TensorRef::from_array_view((shape, &self.scratch[..])).map_err(run_err)?;
        let outputs = self.session.run(ort::inputs![self.spec.input.as_str() => tensor]).map_err(run_err)?;
        let value = outputs
            .get(self.spec.output.as_str())
            .ok_or_else(|| EncoderError::Run { model: model(), message: format!("no output `{}`", self.spec.output) })?;
        let (oshape, data) = value.try_extract_tensor::<f32>().map_err(run_err)?;
        // [b, dim, 1, …] is [b, dim] (checked at load time, and again here: the graph may
        // have left those dimensions open).
        if oshape.len() < 2 || oshape[0] as usize != b || oshape.iter().skip(2).any(|d| *d != 1) {
            return Err(EncoderError::Run {
                model: model(),
                message: format!("output shape {:?}, expected [{b}, dim]", oshape.iter().collect::<Vec<_>>()),
            });
        }
        let dim = oshape[1] as usize;
        let mut out = data[..m * dim].to_vec();
        for row in out.chunks_exact_mut(dim) {
            let norm = row.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>().sqrt() as f32;
            if norm > 0.0 && norm.is_finite() {
                row.iter_mut().for_each(|v| *v /= norm);
            } else {
                // A zero row has no direction: every cosine with it is 0, so it would be
                // published with meaningless neighbours. It is NaN, like a row that was
                // NaN already, which the embed stage skips with its file.
                row.fill(f32::NAN);
            }
        }
        Ok(out)
    }
}
