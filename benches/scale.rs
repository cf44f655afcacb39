//! Neighbours, map and structure at scale: time and peak memory of each step, on a site's
//! embeddings or on synthetic clustered embeddings (the 1M-item design point).
//!
//! cargo bench --bench scale -- --parquet SITE/api/embeddings.parquet
//! cargo bench --bench scale -- --synthetic 1000000 [--dim 128] [--clusters 200]
//!
//! With --out DIR the map is written as DIR/layout.f32 (for benches/layout_python.py).
//! With --render DIR the api/ files and the whole site (pages, map, galleries) are then
//! published into DIR/site, each item named `syn/<i>` and given one of 1,000 distinct
//! thumbnails (so every map tile builds a real atlas), and the publish is timed too.
//! Built with `--features gpu`, `--device cuda` searches on the GPU (FAISS GPU) and
//! `--exact-max-items` moves the exact/IVF threshold; `--neighbours-only` stops there.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use simsite::{layout, neighbours, structure};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    parquet: Option<PathBuf>,
    #[arg(long)]
    synthetic: Option<usize>,
    #[arg(long, default_value_t = 128)]
    dim: usize,
    #[arg(long, default_value_t = 200)]
    clusters: usize,
    #[arg(long)]
    out: Option<PathBuf>,
    /// Layout epochs (default: the build's, 200 above 10,000 items).
    #[arg(long)]
    epochs: Option<usize>,
    /// Where FAISS searches: auto, cpu or cuda (cuda needs a build with --features gpu).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Exact search up to this many items (of dimension 128), IVF above; default: the
    /// build's (50,000 on the CPU, 1,000,000 on a GPU).
    #[arg(long)]
    exact_max_items: Option<f64>,
    /// Time the neighbour search only.
    #[arg(long)]
    neighbours_only: bool,
    /// Publish the api/ files and the site into DIR/site (cache in DIR/cache).
    #[arg(long)]
    render: Option<PathBuf>,
    /// cargo bench passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Peak resident memory of this process so far (VmHWM), in MB.
fn peak_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<f64>().unwrap_or(0.0)))
        .unwrap_or(0.0)
        / 1024.0
}

fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let r = f()?;
    println!("{name:<32} {:>8.2} s   peak RSS {:>8.0} MB", t.elapsed().as_secs_f64(), peak_mb());
    Ok(r)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let (emb, d) = match (&a.parquet, a.synthetic) {
        (Some(p), _) => step("read embeddings", || {
            let e = simsite::cache::read_exported(p).map_err(anyhow::Error::msg)?;
            Ok((e.embeddings, e.dim))
        })?,
        (None, Some(n)) => step("synthetic embeddings", || Ok((simsite::synth::clustered_embeddings(n, a.dim, a.clusters, 0xC0FFEE), a.dim)))?,
        _ => bail!("give --parquet FILE or --synthetic N"),
    };
    let n = emb.len() / d;
    println!("{n} items of dimension {d}, {} threads", rayon::current_num_threads());
    let total = Instant::now();
    let mut ns = neighbours::NeighbourSettings::default();
    ns.device = match a.device.as_str() {
        "auto" => neighbours::Device::Auto,
        "cpu" => neighbours::Device::Cpu,
        "cuda" => neighbours::Device::Cuda,
        other => bail!("--device {other}: expected auto, cpu or cuda"),
    };
    if let Some(m) = a.exact_max_items {
        ns.exact_max_flops = m * m * 128.0;
        ns.gpu_exact_max_flops = m * m * 128.0;
    }
    let nb = step("neighbours (FAISS)", || neighbours::search(&emb, d, &ns))?;
    println!(
        "  {} on {} ({}): recall@{} {:.3} on {} queries",
        nb.info.method, nb.info.device, nb.info.device_note, nb.k, nb.info.recall, nb.info.recall_sample
    );
    if a.neighbours_only {
        return Ok(());
    }
    let s = layout::LayoutSettings { n_epochs: a.epochs, ..Default::default() };
    let g = step("layout: fuzzy graph", || Ok(layout::fuzzy_graph(&nb, n, s.n_neighbors)))?;
    let start = step("layout: PCA start", || layout::pca_start(&emb, d, s.seed))?;
    let xy = step("layout: SGD", || layout::optimise(&g, layout::Start::Fresh(start), &s))?;
    let st = structure::StructureSettings::default();
    let clusters_of = step("clusters (HDBSCAN)", || Ok(structure::clusters(&xy, &emb, d, &nb, st.cluster_size(n))))?;
    let clusters = &clusters_of.0;
    let (score, rank) = step("outliers (isolation forest)", || Ok(st.outliers(&emb, d, &nb)))?;
    let dups = step("duplicates", || Ok(structure::duplicates(&nb, n, st.duplicate_threshold)))?;
    if let Some(dir) = &a.render {
        let (clusters, cluster_of) = &clusters_of;
        let s = simsite::api::Structure { clusters, cluster_of, outlier_score: &score, outlier_rank: &rank, duplicates: &dups };
        render(dir, n, &nb, &xy, &s)?;
    }
    println!(
        "total {:.1} s (after reading); {} clusters, {} near-duplicate pairs; peak RSS {:.0} MB",
        total.elapsed().as_secs_f64(),
        clusters.len(),
        dups.len(),
        peak_mb()
    );
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out)?;
        std::fs::write(out.join("layout.f32"), layout::f32_bytes(&xy))?;
    }
    Ok(())
}

/// The api/ files and the site of `n` synthetic items, published into `dir/site`.
fn render(dir: &std::path::Path, n: usize, nb: &neighbours::Neighbours, xy: &[f32], st: &simsite::api::Structure) -> Result<()> {
    use simsite::catalogue::Item;
    use simsite::scan::{Format, ScanEntry};
    let cache = dir.join("cache");
    let thumbs_dir = cache.join("bench-thumbs");
    std::fs::create_dir_all(&thumbs_dir)?;
    // 1,000 distinct thumbnails (blobs at different places), shared round robin.
    let thumbs: Vec<PathBuf> = (0..1000)
        .map(|t| -> Result<PathBuf> {
            let p = thumbs_dir.join(format!("{t}.jpg"));
            if !p.exists() {
                let (cx, cy) = ((t % 32) as f32 * 4.0, (t / 32) as f32 * 4.0);
                let px: Vec<u8> = (0..128 * 128)
                    .map(|k| {
                        let (x, y) = ((k % 128) as f32 - cx, (k / 128) as f32 - cy);
                        (255.0 * (-(x * x + y * y) / 200.0).exp()) as u8
                    })
                    .collect();
                let mut out = Vec::new();
                jpeg_encoder::Encoder::new(&mut out, 85).encode(&px, 128, 128, jpeg_encoder::ColorType::Luma)?;
                std::fs::write(&p, out)?;
            }
            Ok(p)
        })
        .collect::<Result<_>>()?;
    let items: Vec<Item> = (0..n)
        .map(|i| {
            let rel = format!("syn/{i:07}.fits");
            Item {
                id: format!("syn~{i:07}.fits"),
                entry: ScanEntry { rel: PathBuf::from(&rel), rel_str: rel.clone(), abs: dir.join(&rel), format: Format::Fits, stem: format!("{i:07}"), size: 0, meta: None },
                title: format!("synthetic {i}"),
                url: None,
                ra: None,
                dec: None,
                meta: Vec::new(),
            }
        })
        .collect();
    let refs: Vec<&Item> = items.iter().collect();
    let thumb_refs: Vec<&std::path::Path> = (0..n).map(|i| thumbs[i % thumbs.len()].as_path()).collect();
    let previews: Vec<Option<&std::path::Path>> = vec![None; n];
    let overrides = simsite::config::Overrides { archive: Some(dir.join("syn")), out: Some(dir.join("site")), cache: Some(cache.clone()), ..Default::default() };
    let settings = simsite::config::resolve(simsite::config::RawConfig::default(), None, dir, &overrides)?;
    let release = step("publish: begin", || simsite::publish::Release::begin(&dir.join("site")))?;
    step("api files", || simsite::api::publish(&release, &refs, nb, xy, st))?;
    let ui = simsite::ui::Ui::new(true);
    let model = simsite::site::Model { nb, xy, st, show: 12, places_kept: false };
    let input = simsite::site::Input { items: &refs, thumbs: &thumb_refs, previews: &previews, known: &[], columns: &[], keywords: &[], model: Some(model), eval: false };
    let r = step("render (pages, map, galleries)", || simsite::site::render(&release, &settings, &input, &ui))?;
    let c = step("publish: commit", || release.commit(&cache))?;
    println!("  {} pages, {} files in the release", r.pages, c.files);
    Ok(())
}
