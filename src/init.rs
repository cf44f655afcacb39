//! `simsite init`: a documented config listing every key with its default.

use std::path::Path;

use anyhow::{bail, Context, Result};

pub const TEMPLATE: &str = include_str!("config_template.toml");

pub fn write_config(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!("{} already exists\n  fix: pass --force to replace it, or give another path", path.display());
    }
    crate::fsutil::atomic_write(path, TEMPLATE.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}
