//! A configuration problem, in one line ([`ConfigError`]), by kind: a file that cannot be
//! read, a document that does not parse, an override that does not fit, a value that makes no
//! sense.
//!
//! Invariants: every text is one line naming where the problem is (the file and line, the
//! environment or the command line, or the setting); a cause that is an error of its own (the
//! file system's, the TOML parser's) is given by [`std::error::Error::source`].

use std::error::Error;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A configuration problem, in one line.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConfigError {
    /// A configuration file cannot be read.
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        error: Arc<std::io::Error>,
    },
    /// A TOML document does not parse or does not fit the configuration (unknown keys,
    /// wrong types).
    Syntax {
        /// Where the document came from (`config file runner.toml`).
        origin: String,
        /// The line of the problem, when known.
        line: Option<usize>,
        /// The parser's error.
        error: Box<toml::de::Error>,
    },
    /// An override from the environment or the command line does not fit its setting.
    Override {
        /// `environment` or `command line`.
        origin: String,
        /// What is wrong, naming the setting.
        problem: String,
    },
    /// A value that parses but makes no sense; the text names the setting.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::File { path, error } => match error.kind() {
                std::io::ErrorKind::NotFound => {
                    write!(f, "config file {}: not found", path.display())
                }
                _ => write!(f, "config file {}: {error}", path.display()),
            },
            ConfigError::Syntax {
                origin,
                line,
                error,
            } => {
                let msg = error.message().trim().replace('\n', " ");
                match line {
                    Some(l) => write!(f, "{origin}, line {l}: {msg}"),
                    None => write!(f, "{origin}: {msg}"),
                }
            }
            ConfigError::Override { origin, problem } => write!(f, "{origin}: {problem}"),
            ConfigError::Invalid(problem) => f.write_str(problem),
        }
    }
}

impl Error for ConfigError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ConfigError::File { error, .. } => Some(error.as_ref()),
            ConfigError::Syntax { error, .. } => Some(error.as_ref()),
            ConfigError::Override { .. } | ConfigError::Invalid(_) => None,
        }
    }
}

/// A value that makes no sense, named by `msg`.
pub(super) fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}
