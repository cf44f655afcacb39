//! `simsite query IMAGE…`: the "upload an image" wish, offline. Each image is decoded and
//! embedded with the site's model exactly as the build does, then compared (cosine) with
//! every item of the built site's `api/embeddings.parquet`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;

use crate::config::Settings;
use crate::ui::Ui;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Match {
    pub id: String,
    pub score: f32,
    /// The item's page, relative to the site's root.
    pub url: String,
}

#[derive(Debug, Serialize)]
pub struct Answer {
    pub file: String,
    /// `None` when the file could not be read (see `error`).
    pub neighbors: Option<Vec<Match>>,
    pub error: Option<String>,
}

/// The k best items for each file. A file that cannot be read gets its error and the
/// others are still answered.
pub fn query(settings: &Settings, files: &[PathBuf], k: usize, ui: &Ui) -> Result<Vec<Answer>> {
    let mut settings = settings.clone();
    let Some(mut enc) = crate::pipeline::load_encoder(&mut settings, ui)? else {
        bail!("no [encoder] model configured: query embeds images with the site's model\n  fix: run it with the config the site was built with (--config FILE)");
    };
    let api = settings.out.join("api");
    let parquet = api.join("embeddings.parquet");
    if !parquet.is_file() {
        bail!(
            "no built site in {}: {} is missing\n  fix: run `simsite build` first, or point --out (or --config) at the site",
            settings.out.display(),
            parquet.display()
        );
    }
    check_site(&api.join("manifest.json"), &enc.digest.to_hex(), &crate::api::preprocess_digest(&settings.preprocess))?;
    let site = crate::cache::read_exported(&parquet).map_err(anyhow::Error::msg)?;
    if site.dim != enc.spec.dim {
        bail!("the site's embeddings have dimension {}, the model gives {}\n  fix: rebuild the site with this model", site.dim, enc.spec.dim);
    }
    let n = site.ids.len();
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let answer = match crate::inspect::inspect(f, &settings.preprocess, settings.thumbs.size, &[]) {
            Ok(i) => {
                let e = enc.embed(&i.prepared.tensor, 1)?;
                if e.iter().all(|v| v.is_finite()) {
                    Answer { file: f.display().to_string(), neighbors: Some(best(&site.embeddings, n, &e, k, &site.ids)), error: None }
                } else {
                    // As the build skips such a file: a zero or NaN embedding has no direction.
                    Answer { file: f.display().to_string(), neighbors: None, error: Some(crate::encoder::NO_DIRECTION.into()) }
                }
            }
            Err(e) => Answer { file: f.display().to_string(), neighbors: None, error: Some(format!("{e:#}")) },
        };
        out.push(answer);
    }
    Ok(out)
}

/// The site must have been built with this model and these preprocessing settings, or the
/// scores mean nothing. (A site built before simsite recorded the preprocessing's digest
/// is taken at its word.)
fn check_site(manifest: &Path, digest: &str, preprocess: &str) -> Result<()> {
    let text = std::fs::read(manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    let m: serde_json::Value = serde_json::from_slice(&text).with_context(|| format!("{} is not a simsite manifest", manifest.display()))?;
    let site = manifest.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    let built = m["model"]["digest"].as_str().unwrap_or("");
    if built != digest {
        bail!(
            "the site in {} was built with model {} ({}), but this config's model has digest {digest}\n  fix: query with the config the site was built with, or rebuild the site",
            site.display(),
            m["model"]["name"].as_str().unwrap_or("?"),
            built
        );
    }
    if m["preprocess_digest"].as_str().is_some_and(|d| d != preprocess) {
        bail!(
            "the site in {} was built with other preprocessing settings ([preprocess], [fits]) than this config's, so its images were prepared otherwise\n  fix: query with the config the site was built with, or rebuild the site",
            site.display()
        );
    }
    Ok(())
}

/// Top k of `emb · q` (rows of dimension q.len()), best first, ties by row.
fn best(emb: &[f32], n: usize, q: &[f32], k: usize, ids: &[String]) -> Vec<Match> {
    let d = q.len();
    // Scored as the site's neighbours are, so a file of the archive scores as its page says.
    let mut scores: Vec<(f32, usize)> = (0..n).into_par_iter().map(|i| (crate::neighbours::canonical_score(&emb[i * d..(i + 1) * d], q), i)).collect();
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let order = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    scores.select_nth_unstable_by(k - 1, order);
    scores.truncate(k);
    scores.sort_by(order);
    scores.into_iter().map(|(s, i)| Match { id: ids[i].clone(), score: s, url: format!("items/{}/", ids[i]) }).collect()
}
