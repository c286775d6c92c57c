//! Errors of the inference core. Each one names the input it failed on and what to do.
use std::path::PathBuf;

/// What went wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The model folder or file is unusable (missing/corrupt files, bad config, missing tensors).
    #[error("{}: {msg}", path.display())]
    BrokenModel { path: PathBuf, msg: String },
    /// A well-formed model that this build cannot run.
    #[error("{}: {msg}", path.display())]
    Unsupported { path: PathBuf, msg: String },
    /// The tokenizer or chat template failed.
    #[error("{0}")]
    Tokenizer(String),
    /// The prompt does not fit in the model's context.
    #[error(
        "the prompt is {prompt} tokens but the model's context is {context} tokens \
         ({reserved} reserved for generation); shorten it, or pass --truncate left to keep its last tokens"
    )]
    ContextOverflow {
        prompt: usize,
        context: usize,
        reserved: usize,
    },
    /// Invalid generation options.
    #[error("{0}")]
    Options(String),
    /// MLX failed while computing.
    #[error("MLX: {0}")]
    Mlx(String),
}

impl From<mlx_rs::error::Exception> for InferError {
    fn from(e: mlx_rs::error::Exception) -> Self {
        InferError::Mlx(e.to_string())
    }
}

pub type Result<T, E = InferError> = std::result::Result<T, E>;

pub(crate) fn broken(path: impl Into<PathBuf>, msg: impl Into<String>) -> InferError {
    InferError::BrokenModel {
        path: path.into(),
        msg: msg.into(),
    }
}

pub(crate) fn unsupported(path: impl Into<PathBuf>, msg: impl Into<String>) -> InferError {
    InferError::Unsupported {
        path: path.into(),
        msg: msg.into(),
    }
}

/// The exit contract (DESIGN.md): a model that cannot run here is 4, bad options 2.
impl mlxk::cli::ExitStatus for InferError {
    fn exit(&self) -> mlxk::cli::Exit {
        use mlxk::cli::Exit;
        match self {
            InferError::BrokenModel { .. } | InferError::Unsupported { .. } => Exit::Unusable,
            InferError::ContextOverflow { .. } | InferError::Options(_) => Exit::Usage,
            InferError::Tokenizer(_) | InferError::Mlx(_) => Exit::Failure,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            InferError::BrokenModel { .. } => "broken_model",
            InferError::Unsupported { .. } => "unsupported",
            InferError::ContextOverflow { .. } => "context_overflow",
            InferError::Options(_) => "usage",
            InferError::Tokenizer(_) => "tokenizer",
            InferError::Mlx(_) => "mlx",
        }
    }
}

impl From<InferError> for mlxk::cli::Failure {
    fn from(e: InferError) -> mlxk::cli::Failure {
        mlxk::cli::ExitStatus::failure(&e)
    }
}
