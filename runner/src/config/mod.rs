//! The runner's configuration: defaults, then a TOML file, then environment variables, then
//! command-line flags ([`Config::load`]), then validation, section by section.
//!
//! Its rooms: what can be written and its defaults (`document`), the choices written as text
//! and held typed (`text`), the overrides of the environment and the command line
//! (`overrides`), each section's validation (`validate`), and the error of each kind of
//! problem (`error`). Raw to checked, as in two steps: reading the document turns each
//! choice's text into its value (or refuses it, with the line); validation then checks what
//! parses but makes no sense.
//!
//! Invariants: unknown keys, wrong types and invalid values are errors that name the problem
//! in one line; a loaded configuration has passed validation; `runner check-config` prints
//! the effective configuration as TOML that loads back to the same.

mod document;
mod error;
mod overrides;
mod text;
mod validate;

pub use document::{
    BackendKind, BridgeConfig, Config, ContractConfig, HistoryConfig, IbkrConfig, LiveConfig,
    NatsConfig, ReplayConfig, SimConfig, StrategyConfig, SupervisorConfig, TradingConfig,
};
pub use error::ConfigError;
pub use overrides::{Overrides, ENV_VARS};
pub use text::{parse_tif, HistoryEnd};
pub(crate) use validate::MAX_CLIENT_NAME;

use std::path::Path;
use std::sync::Arc;

impl Config {
    /// Parses a TOML document that came from `origin` (`config file runner.toml`).
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            });
            ConfigError::Syntax {
                origin: origin.to_string(),
                line,
                error: Box::new(e),
            }
        })
    }

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            error: Arc::new(e),
        })?;
        Config::parse(&text, &format!("config file {}", path.display()))
    }

    /// Defaults, then `file`, then the environment (`env` looks a variable up), then `flags`;
    /// then validation.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut cfg = match file {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        cfg.apply(&Overrides::from_env(env), "environment")?;
        cfg.apply(flags, "command line")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
