//! The sentence encoder behind guard-in's semantic checks: one embedding per user message, in-process.
//!
//! Guarantee: nothing is downloaded, at build time or at run time. ONNX Runtime's shared library and the
//! model files are read from paths the operator gives ([`EncoderConfig::from_env`]: `TURNPIKE_MODEL_DIR`
//! with `model.onnx` + `tokenizer.json`, `ORT_DYLIB_PATH`), fetched once by `deploy/local/models.sh` with
//! pinned versions and sha256 sums. When they are missing, [`Encoder::load`] returns an error and the
//! caller runs without model checks (and says so); it never panics.
//!
//! Embedding: the tokenizer's padding is turned off (the shipped MiniLM tokenizer pads every input to 128
//! tokens, ~10x the cost of a short message); a message longer than `max_tokens` keeps its first and last
//! halves (an attack appended to a long, harmless message stays in view); the encoder's last hidden state
//! is mean-pooled over the tokens and L2-normalised, so the dot product of two [`Embedding`]s is their
//! cosine similarity. ONNX Runtime runs with one intra-op thread and no spinning: the pipeline's stages share
//! the cores, and a second thread did not help on two cores (see `shared/notes/models.md`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use tokenizers::Tokenizer;

/// Default cap on the tokens the encoder sees per message (MiniLM was trained on up to 128; cost grows
/// linearly: ~1.1 ms for 12 tokens, ~5.5 ms for 64, ~12 ms for 128 on one core of this machine kind).
pub const DEFAULT_MAX_TOKENS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("model directory not configured (set TURNPIKE_MODEL_DIR; deploy/local/models.sh fetches the files)")]
    NotConfigured,
    #[error("{0} not found (deploy/local/models.sh fetches it)")]
    Missing(PathBuf),
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("encoder output: {0}")]
    Output(String),
}

fn rt(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Runtime(e.to_string())
}

/// Where the encoder's files are and how to run it.
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    /// Holds `model.onnx` (input `input_ids`, `attention_mask`, optionally `token_type_ids`; output: the
    /// last hidden state `[batch, tokens, dim]`) and `tokenizer.json`.
    pub model_dir: PathBuf,
    /// `libonnxruntime.so` (1.31 or newer). `None`: the `ORT_DYLIB_PATH` variable, else the system's.
    pub ort_dylib: Option<PathBuf>,
    pub max_tokens: usize,
    /// ONNX Runtime sessions (each runs one message at a time); more than the cores gains nothing.
    pub sessions: usize,
}

impl EncoderConfig {
    /// `TURNPIKE_MODEL_DIR` (required), `ORT_DYLIB_PATH`, `TURNPIKE_MODEL_MAX_TOKENS` (default 128),
    /// `TURNPIKE_MODEL_SESSIONS` (default: the available cores, at most 4).
    pub fn from_env() -> Result<Self, EmbedError> {
        let model_dir =
            std::env::var_os("TURNPIKE_MODEL_DIR").filter(|v| !v.is_empty()).ok_or(EmbedError::NotConfigured)?;
        let num = |name: &str, default: usize| {
            std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok()).filter(|n| *n > 0).unwrap_or(default)
        };
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(4);
        Ok(EncoderConfig {
            model_dir: model_dir.into(),
            ort_dylib: std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()).map(PathBuf::from),
            max_tokens: num("TURNPIKE_MODEL_MAX_TOKENS", DEFAULT_MAX_TOKENS),
            sessions: num("TURNPIKE_MODEL_SESSIONS", cores),
        })
    }

    /// The files where `deploy/local/models.sh` caches them (`$TURNPIKE_MODEL_CACHE`, else
    /// `$XDG_CACHE_HOME/turnpike-models`, else `~/.cache/turnpike-models`) when `TURNPIKE_MODEL_DIR` is not
    /// set: for tests and tools run from a checkout. The pipeline itself uses [`EncoderConfig::from_env`].
    pub fn from_env_or_local_cache() -> Result<Self, EmbedError> {
        match Self::from_env() {
            Err(EmbedError::NotConfigured) => {
                let cache = std::env::var_os("TURNPIKE_MODEL_CACHE")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("turnpike-models")))
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/turnpike-models")))
                    .ok_or(EmbedError::NotConfigured)?;
                let mut cfg = EncoderConfig {
                    model_dir: cache.join(LOCAL_MODEL),
                    ort_dylib: Some(cache.join(LOCAL_ORT)),
                    max_tokens: DEFAULT_MAX_TOKENS,
                    sessions: 1,
                };
                if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
                    cfg.ort_dylib = Some(p.into());
                }
                Ok(cfg)
            }
            other => other,
        }
    }
}

/// The paths under the cache of `deploy/local/models.sh` (keep in step with its pinned versions).
const LOCAL_MODEL: &str = "all-minilm-l6-v2-q-1.19.0-beta29";
const LOCAL_ORT: &str = "onnxruntime-1.31.1/libonnxruntime.so.1.31.1";

/// An L2-normalised sentence vector: `a.cosine(&b)` is a dot product.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding(pub Vec<f32>);

impl Embedding {
    pub fn cosine(&self, other: &Embedding) -> f32 {
        self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum()
    }

    /// Mean of unit vectors, normalised again (a centroid of example phrases).
    pub fn centroid(items: &[Embedding]) -> Option<Embedding> {
        let dim = items.first()?.0.len();
        let mut sum = vec![0.0f32; dim];
        for e in items {
            sum.iter_mut().zip(&e.0).for_each(|(s, x)| *s += x);
        }
        Some(Embedding(normalised(sum)))
    }
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The loaded encoder. `Sync`: every call takes one of its sessions (the least recently handed out that is
/// free, else waits for one), so it can be shared behind an `Arc` by every stage task.
pub struct Encoder {
    tokenizer: Tokenizer,
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    token_type_ids: bool,
    max_tokens: usize,
    cls: u32,
    sep: u32,
    name: String,
}

/// ONNX Runtime allows one environment per process; the first load's outcome is kept for every later one.
/// The environment is kept here for the life of the process (sessions hold only a weak reference to it).
static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();

fn init_runtime(dylib: Option<&Path>) -> Result<Environment, EmbedError> {
    RUNTIME
        .get_or_init(|| {
            let path = match dylib {
                Some(p) if !p.exists() => return Err(EmbedError::Missing(p.to_path_buf()).to_string()),
                Some(p) => p.to_path_buf(),
                None => PathBuf::from("libonnxruntime.so"),
            };
            let builder = ort::init_from(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            builder.with_name("turnpike").build().map_err(|e| e.to_string())
        })
        .clone()
        .map_err(EmbedError::Runtime)
}

impl Encoder {
    pub fn load(cfg: &EncoderConfig) -> Result<Self, EmbedError> {
        let model = cfg.model_dir.join("model.onnx");
        let tok = cfg.model_dir.join("tokenizer.json");
        for p in [&model, &tok] {
            if !p.exists() {
                return Err(EmbedError::Missing(p.clone()));
            }
        }
        let env = init_runtime(cfg.ort_dylib.as_deref())?;
        let mut tokenizer = Tokenizer::from_file(&tok).map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let id = |t: &str| tokenizer.token_to_id(t).ok_or_else(|| EmbedError::Tokenizer(format!("no {t} token")));
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        let mut sessions = Vec::new();
        for _ in 0..cfg.sessions.max(1) {
            let session = Session::builder(&env)
                .map_err(rt)?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(rt)?
                .with_intra_threads(1)
                .map_err(rt)?
                .with_inter_threads(1)
                .map_err(rt)?
                .with_intra_op_spinning(false)
                .map_err(rt)?
                .commit_from_file(&model)
                .map_err(rt)?;
            sessions.push(Mutex::new(session));
        }
        let token_type_ids = sessions[0].lock().map_err(rt)?.inputs().iter().any(|i| i.name() == "token_type_ids");
        let name = cfg.model_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Encoder {
            tokenizer,
            sessions,
            next: AtomicUsize::new(0),
            token_type_ids,
            max_tokens: cfg.max_tokens.max(4),
            cls,
            sep,
            name,
        })
    }

    /// The model directory's name (e.g. `all-minilm-l6-v2-q-1.19.0-beta29`), for start-up logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The token ids the encoder sees: `[CLS] … [SEP]`, at most `max_tokens`, head and tail kept.
    pub fn token_ids(&self, text: &str) -> Result<Vec<i64>, EmbedError> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let ids = enc.get_ids();
        // Without [CLS]/[SEP] at the ends (a tokenizer whose post-processor adds them) take the ids as they are.
        let inner = match (ids.first(), ids.last()) {
            (Some(&f), Some(&l)) if f == self.cls && l == self.sep && ids.len() >= 2 => &ids[1..ids.len() - 1],
            _ => ids,
        };
        let room = self.max_tokens - 2;
        let mut out = Vec::with_capacity(inner.len().min(room) + 2);
        out.push(i64::from(self.cls));
        if inner.len() <= room {
            out.extend(inner.iter().map(|&i| i64::from(i)));
        } else {
            let head = room.div_ceil(2);
            out.extend(inner[..head].iter().map(|&i| i64::from(i)));
            out.extend(inner[inner.len() - (room - head)..].iter().map(|&i| i64::from(i)));
        }
        out.push(i64::from(self.sep));
        Ok(out)
    }

    /// One message's embedding (CPU-bound: ~1-6 ms for up to 64 tokens; call it off the async reactor).
    pub fn embed(&self, text: &str) -> Result<Embedding, EmbedError> {
        let ids = self.token_ids(text)?;
        let n = ids.len();
        let input_ids = Tensor::from_array(([1usize, n], ids)).map_err(rt)?;
        let mask = Tensor::from_array(([1usize, n], vec![1i64; n])).map_err(rt)?;
        let mut session = self.session()?;
        let outputs = if self.token_type_ids {
            let types = Tensor::from_array(([1usize, n], vec![0i64; n])).map_err(rt)?;
            session.run(ort::inputs!["input_ids" => input_ids, "attention_mask" => mask, "token_type_ids" => types])
        } else {
            session.run(ort::inputs!["input_ids" => input_ids, "attention_mask" => mask])
        }
        .map_err(rt)?;
        let (shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(rt)?;
        let dims: Vec<i64> = shape.iter().copied().collect();
        let [1, tokens, dim] = dims[..] else {
            return Err(EmbedError::Output(format!("expected [1, {n}, dim], got {dims:?}")));
        };
        let (tokens, dim) = (tokens as usize, dim as usize);
        if tokens != n || data.len() != tokens * dim {
            return Err(EmbedError::Output(format!("expected [1, {n}, dim], got {dims:?}")));
        }
        let mut mean = vec![0.0f32; dim];
        for row in data.chunks_exact(dim) {
            mean.iter_mut().zip(row).for_each(|(m, x)| *m += x);
        }
        Ok(Embedding(normalised(mean)))
    }

    /// A free session if there is one, else the next in turn (waiting for it).
    fn session(&self) -> Result<std::sync::MutexGuard<'_, Session>, EmbedError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.sessions.len();
        for i in 0..n {
            if let Ok(s) = self.sessions[(start + i) % n].try_lock() {
                return Ok(s);
            }
        }
        self.sessions[start % n].lock().map_err(rt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_normalised_vectors_and_centroid() {
        let a = Embedding(normalised(vec![3.0, 4.0]));
        let b = Embedding(normalised(vec![4.0, 3.0]));
        assert!((a.cosine(&a) - 1.0).abs() < 1e-6);
        assert!((a.cosine(&b) - 0.96).abs() < 1e-6);
        let c = Embedding::centroid(&[a.clone(), b.clone()]).unwrap();
        assert!((c.0[0] - c.0[1]).abs() < 1e-6 && (c.cosine(&c) - 1.0).abs() < 1e-6);
        assert_eq!(Embedding::centroid(&[]), None);
    }

    #[test]
    fn missing_files_are_an_error_not_a_panic() {
        let cfg = EncoderConfig {
            model_dir: PathBuf::from("/nonexistent/turnpike-model"),
            ort_dylib: None,
            max_tokens: 128,
            sessions: 1,
        };
        let err = Encoder::load(&cfg).err().expect("no model there");
        assert!(matches!(err, EmbedError::Missing(ref p) if p.ends_with("model.onnx")), "{err}");
    }
}
