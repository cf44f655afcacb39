//! Synthetic archive generator: a labelled archive of galaxy-like FITS/PNG/JPEG images (with
//! optional transformed "twins") that is simsite's own scale and quality test bed.
//!
//! Everything an image looks like is decided by a random stream seeded from `(seed, index,
//! purpose)`, never by a shared generator, so the bytes written do not depend on thread
//! count or scheduling. The generator is our own xoshiro256++ rather than `rand`'s `StdRng`
//! because `StdRng` is explicitly allowed to change between `rand` releases, and archives
//! made by this module are meant to stay reproducible across dependency upgrades.
//!
//! Labels never end up inside the image files (no telling FITS keywords, no telling names):
//! they go to a CSV beside the archive, so a similarity engine cannot cheat.

use std::collections::BTreeMap;
use std::f32::consts::{PI, TAU};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use rayon::prelude::*;

/// Files per shard folder: keeps directory listings fast on any file system.
pub const SHARD_SIZE: usize = 1000;

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// What an image shows. The first five are the morphologies (roughly equally common); the
/// last three are rare artefacts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Label {
    Disk,
    Elliptical,
    EdgeOn,
    Merger,
    PointSource,
    SatelliteTrail,
    HotColumn,
    CosmicRays,
}

impl Label {
    pub const MORPHOLOGIES: [Label; 5] = [
        Label::Disk,
        Label::Elliptical,
        Label::EdgeOn,
        Label::Merger,
        Label::PointSource,
    ];
    pub const ARTEFACTS: [Label; 3] = [Label::SatelliteTrail, Label::HotColumn, Label::CosmicRays];
    pub const ALL: [Label; 8] = [
        Label::Disk,
        Label::Elliptical,
        Label::EdgeOn,
        Label::Merger,
        Label::PointSource,
        Label::SatelliteTrail,
        Label::HotColumn,
        Label::CosmicRays,
    ];

    /// The spelling used in the labels CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Disk => "disk",
            Label::Elliptical => "elliptical",
            Label::EdgeOn => "edge-on",
            Label::Merger => "merger",
            Label::PointSource => "point-source",
            Label::SatelliteTrail => "satellite-trail",
            Label::HotColumn => "hot-column",
            Label::CosmicRays => "cosmic-rays",
        }
    }

    pub fn is_artefact(self) -> bool {
        Label::ARTEFACTS.contains(&self)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Label {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Label::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .with_context(|| format!("unknown label `{s}`"))
    }
}

/// File format family. Which exact encoding (bit depth, colour) a file gets is drawn per
/// file; see [`Encoding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    Fits,
    Png,
    Jpeg,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Fits => "fits",
            Format::Png => "png",
            Format::Jpeg => "jpg",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Fits => "fits",
            Format::Png => "png",
            Format::Jpeg => "jpeg",
        }
    }

    /// Share of the default mix: FITS dominates real archives, JPEG previews are rarer.
    fn weight(self) -> f32 {
        match self {
            Format::Fits => 0.40,
            Format::Png => 0.35,
            Format::Jpeg => 0.25,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "fits" | "fit" | "fts" => Ok(Format::Fits),
            "png" => Ok(Format::Png),
            "jpeg" | "jpg" => Ok(Format::Jpeg),
            _ => bail!("unknown format `{s}` (expected fits, png or jpeg)"),
        }
    }
}

/// The exact on-disk encoding of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Encoding {
    /// BITPIX -32.
    FitsF32,
    /// BITPIX 16 with BSCALE/BZERO (either a fitted scale or the unsigned-16 convention).
    FitsI16,
    PngGrey8,
    PngGrey16,
    PngRgb8,
    JpegGrey,
    JpegRgb,
}

impl Encoding {
    pub fn format(self) -> Format {
        match self {
            Encoding::FitsF32 | Encoding::FitsI16 => Format::Fits,
            Encoding::PngGrey8 | Encoding::PngGrey16 | Encoding::PngRgb8 => Format::Png,
            Encoding::JpegGrey | Encoding::JpegRgb => Format::Jpeg,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::FitsF32 => "fits-f32",
            Encoding::FitsI16 => "fits-i16",
            Encoding::PngGrey8 => "png-grey8",
            Encoding::PngGrey16 => "png-grey16",
            Encoding::PngRgb8 => "png-rgb8",
            Encoding::JpegGrey => "jpeg-grey",
            Encoding::JpegRgb => "jpeg-rgb",
        }
    }

    pub fn channels(self) -> usize {
        match self {
            Encoding::PngRgb8 | Encoding::JpegRgb => 3,
            _ => 1,
        }
    }

    fn choose(format: Format, rng: &mut Rng) -> Encoding {
        let u = rng.f32();
        match format {
            Format::Fits if u < 0.7 => Encoding::FitsF32,
            Format::Fits => Encoding::FitsI16,
            Format::Png if u < 0.5 => Encoding::PngGrey8,
            Format::Png if u < 0.8 => Encoding::PngGrey16,
            Format::Png => Encoding::PngRgb8,
            Format::Jpeg if u < 0.65 => Encoding::JpegGrey,
            Format::Jpeg => Encoding::JpegRgb,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    /// Number of base images (twins come on top).
    pub n: usize,
    pub seed: u64,
    /// Width and height in pixels. Every model scales with it, so a 128 px archive looks
    /// like a 64 px one at twice the resolution.
    pub size: u32,
    /// Fraction of base images (galaxies and stars only) that also get a transformed twin.
    pub twins: f64,
    /// Fraction of base images that are artefacts, spread evenly over the three kinds.
    pub artefact_rate: f64,
    /// Formats to draw from, in the default mix's proportions (FITS 40%, PNG 35%, JPEG 25%).
    pub formats: Vec<Format>,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            n: 1000,
            seed: 1,
            size: 64,
            twins: 0.0,
            artefact_rate: 0.02,
            formats: vec![Format::Fits, Format::Png, Format::Jpeg],
        }
    }
}

impl SynthOptions {
    fn validate(&self) -> Result<()> {
        if self.size < 16 || self.size > 4096 {
            bail!("size {} is out of range (16..=4096 pixels)", self.size);
        }
        if !(0.0..=1.0).contains(&self.twins) {
            bail!("twins fraction {} must be between 0 and 1", self.twins);
        }
        if !(0.0..=1.0).contains(&self.artefact_rate) {
            bail!(
                "artefact rate {} must be between 0 and 1",
                self.artefact_rate
            );
        }
        if self.formats.is_empty() {
            bail!("no output formats given (choose from fits, png, jpeg)");
        }
        Ok(())
    }
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Base images written.
    pub images: usize,
    /// Twins written (on top of `images`).
    pub twins: usize,
    /// Base images per label (twins repeat their original's label and are not counted here).
    pub by_label: BTreeMap<Label, usize>,
    /// All files (base and twins) per format family.
    pub by_format: BTreeMap<Format, usize>,
    /// All files (base and twins) per exact encoding.
    pub by_encoding: BTreeMap<Encoding, usize>,
    /// Total bytes of image files written.
    pub bytes: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} images + {} twins = {} files, {:.1} MB",
            self.images,
            self.twins,
            self.images + self.twins,
            self.bytes as f64 / 1e6
        )?;
        writeln!(f, "labels (base images):")?;
        for (label, count) in &self.by_label {
            writeln!(f, "  {:<16} {count:>8}", label.as_str())?;
        }
        writeln!(f, "formats (all files):")?;
        for (format, count) in &self.by_format {
            writeln!(f, "  {:<16} {count:>8}", format.as_str())?;
        }
        writeln!(f, "encodings (all files):")?;
        for (encoding, count) in &self.by_encoding {
            writeln!(f, "  {:<16} {count:>8}", encoding.as_str())?;
        }
        Ok(())
    }
}

/// The pixel values of one base image just before encoding, so tests can compare what was
/// written (e.g. the FITS row order) with what was meant.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// Path relative to the archive folder, as in the labels file.
    pub path: String,
    pub label: Label,
    pub encoding: Encoding,
    pub size: u32,
    /// One plane per channel (three for RGB encodings), each `size * size` values in
    /// physical units (ADU), row 0 = TOP of the image as seen. FITS files store exactly these
    /// values bottom row first; PNG/JPEG store a stretched version top row first.
    pub planes: Vec<Vec<f32>>,
}

/// Writes `opts.n` base images (plus twins) under `dir` and the labels CSV at `labels`, which
/// must lie outside `dir`. `dir` must be missing or empty, so stale files from an earlier run
/// can never be mistaken for part of this one.
pub fn generate(dir: &Path, labels: &Path, opts: &SynthOptions) -> Result<Summary> {
    opts.validate()?;
    prepare_dirs(dir, labels)?;
    let plan = Plan::new(opts);

    let mut shards: Vec<String> = (0..opts.n.div_ceil(SHARD_SIZE))
        .map(|s| plan.shard(s))
        .collect();
    let mut twin_shards: Vec<String> = (0..opts.n)
        .filter(|&i| plan.twin[i])
        .map(|i| format!("twins/{}", plan.shard(i / SHARD_SIZE)))
        .collect();
    twin_shards.dedup();
    shards.extend(twin_shards);
    for shard in &shards {
        let path = dir.join(shard);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    }

    let written: Vec<Vec<Written>> = (0..opts.n)
        .into_par_iter()
        .map(|i| write_base(dir, opts, &plan, i))
        .collect::<Result<_>>()?;
    let mut rows: Vec<Written> = written.into_iter().flatten().collect();
    rows.sort_by(|a, b| a.path.cmp(&b.path));

    let mut summary = Summary::default();
    for row in &rows {
        if row.twin_of.is_some() {
            summary.twins += 1;
        } else {
            summary.images += 1;
            *summary.by_label.entry(row.label).or_default() += 1;
        }
        *summary.by_format.entry(row.encoding.format()).or_default() += 1;
        *summary.by_encoding.entry(row.encoding).or_default() += 1;
        summary.bytes += row.bytes;
    }

    let mut csv = csv::Writer::from_path(labels)
        .with_context(|| format!("cannot write labels file {}", labels.display()))?;
    csv.write_record(["path", "label", "twin_of"])?;
    for row in &rows {
        csv.write_record([
            row.path.as_str(),
            row.label.as_str(),
            row.twin_of.as_deref().unwrap_or(""),
        ])?;
    }
    csv.flush()
        .with_context(|| format!("cannot write labels file {}", labels.display()))?;
    Ok(summary)
}

/// Recomputes base image `index` of the archive `opts` describes, without writing anything.
/// Costs O(n) for the label plan, so it is meant for tests and spot checks, not loops.
pub fn render(opts: &SynthOptions, index: usize) -> Result<Rendered> {
    opts.validate()?;
    if index >= opts.n {
        bail!("image index {index} is out of range (n = {})", opts.n);
    }
    let plan = Plan::new(opts);
    let base = Base::new(opts, &plan, index);
    let obs = base
        .scene
        .observe(None, base.encoding.channels(), &mut base.noise_rng());
    Ok(Rendered {
        path: base.path,
        label: base.scene.label,
        encoding: base.encoding,
        size: opts.size,
        planes: obs.planes,
    })
}

// ---------------------------------------------------------------------------------------------
// Planning: which image gets which label, which gets a twin, what it is called
// ---------------------------------------------------------------------------------------------

/// Purposes of the per-image random streams. Keeping them apart means, for example, that
/// restricting `formats` changes how files are encoded but not what they show.
const STREAM_SCENE: u64 = 1;
const STREAM_NOISE: u64 = 2;
const STREAM_ENCODE: u64 = 3;
const STREAM_TWIN: u64 = 4;
const STREAM_TWIN_NOISE: u64 = 5;
const STREAM_TWIN_ENCODE: u64 = 6;
const STREAM_PLAN: u64 = 7;

struct Plan {
    labels: Vec<Label>,
    twin: Vec<bool>,
    index_width: usize,
    shard_width: usize,
}

impl Plan {
    /// Labels are dealt from a shuffled deck with exact counts rather than drawn
    /// independently, so even a 300-image archive has the requested artefact share and
    /// balanced morphologies, while their order stays random.
    fn new(opts: &SynthOptions) -> Plan {
        let n = opts.n;
        let mut rng = Rng::stream(opts.seed, u64::MAX, STREAM_PLAN);
        let n_art = ((n as f64 * opts.artefact_rate).round() as usize).min(n);
        let mut labels = Vec::with_capacity(n);
        deal(&mut labels, &Label::ARTEFACTS, n_art);
        deal(&mut labels, &Label::MORPHOLOGIES, n - n_art);
        shuffle(&mut labels, &mut rng);

        // Artefacts are single-exposure accidents: a rotated copy of one is not a "twin".
        let mut candidates: Vec<usize> = (0..n).filter(|&i| !labels[i].is_artefact()).collect();
        shuffle(&mut candidates, &mut rng);
        let n_twins = ((n as f64 * opts.twins).round() as usize).min(candidates.len());
        let mut twin = vec![false; n];
        for &i in &candidates[..n_twins] {
            twin[i] = true;
        }
        let last = n.saturating_sub(1);
        Plan {
            labels,
            twin,
            index_width: digits(last).max(6),
            shard_width: digits(last / SHARD_SIZE).max(3),
        }
    }

    fn shard(&self, shard: usize) -> String {
        format!("{shard:0w$}", w = self.shard_width)
    }

    fn base_path(&self, i: usize, format: Format) -> String {
        format!(
            "{}/img-{i:0w$}.{}",
            self.shard(i / SHARD_SIZE),
            format.extension(),
            w = self.index_width
        )
    }

    fn twin_path(&self, i: usize, format: Format) -> String {
        format!(
            "twins/{}/twin-{i:0w$}.{}",
            self.shard(i / SHARD_SIZE),
            format.extension(),
            w = self.index_width
        )
    }
}

fn digits(mut x: usize) -> usize {
    let mut d = 1;
    while x >= 10 {
        x /= 10;
        d += 1;
    }
    d
}

fn deal(out: &mut Vec<Label>, kinds: &[Label], count: usize) {
    let k = kinds.len();
    for (j, &label) in kinds.iter().enumerate() {
        out.extend(std::iter::repeat_n(
            label,
            count / k + usize::from(j < count % k),
        ));
    }
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

fn prepare_dirs(dir: &Path, labels: &Path) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{} exists and is not a folder", dir.display());
        }
        let mut entries =
            fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty\n  fix: choose a new folder, or delete this one first (synth never overwrites)",
                dir.display()
            );
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = labels
        .file_name()
        .with_context(|| format!("labels path {} has no file name", labels.display()))?;
    let parent = match labels.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let labels_abs = fs::canonicalize(&parent)?.join(name);
    let dir_abs = fs::canonicalize(dir)?;
    if labels_abs.starts_with(&dir_abs) {
        bail!(
            "the labels file {} is inside the archive {}\n  fix: put it beside the archive (e.g. {}.labels.csv)",
            labels.display(),
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writing one base image and its twin
// ---------------------------------------------------------------------------------------------

struct Written {
    path: String,
    label: Label,
    twin_of: Option<String>,
    encoding: Encoding,
    bytes: u64,
}

/// Everything about base image `index` that is decided before pixels are made.
struct Base {
    seed: u64,
    index: u64,
    scene: Scene,
    encoding: Encoding,
    encode_rng: Rng,
    path: String,
}

impl Base {
    fn new(opts: &SynthOptions, plan: &Plan, index: usize) -> Base {
        let i = index as u64;
        let mut scene_rng = Rng::stream(opts.seed, i, STREAM_SCENE);
        let scene = Scene::new(plan.labels[index], opts.size as usize, &mut scene_rng);
        let mut encode_rng = Rng::stream(opts.seed, i, STREAM_ENCODE);
        let format = choose_format(&opts.formats, &mut encode_rng);
        let encoding = Encoding::choose(format, &mut encode_rng);
        Base {
            seed: opts.seed,
            index: i,
            scene,
            encoding,
            encode_rng,
            path: plan.base_path(index, format),
        }
    }

    fn noise_rng(&self) -> Rng {
        Rng::stream(self.seed, self.index, STREAM_NOISE)
    }
}

fn choose_format(formats: &[Format], rng: &mut Rng) -> Format {
    let total: f32 = formats.iter().map(|f| f.weight()).sum();
    let mut u = rng.f32() * total;
    for &f in formats {
        u -= f.weight();
        if u < 0.0 {
            return f;
        }
    }
    formats[formats.len() - 1]
}

fn write_base(dir: &Path, opts: &SynthOptions, plan: &Plan, index: usize) -> Result<Vec<Written>> {
    let mut base = Base::new(opts, plan, index);
    let obs = base
        .scene
        .observe(None, base.encoding.channels(), &mut base.noise_rng());
    let bytes = encode(base.encoding, &obs, &mut base.encode_rng)?;
    write_file(&dir.join(&base.path), &bytes)?;
    let mut out = vec![Written {
        path: base.path.clone(),
        label: base.scene.label,
        twin_of: None,
        encoding: base.encoding,
        bytes: bytes.len() as u64,
    }];

    if plan.twin[index] {
        let mut twin_rng = Rng::stream(opts.seed, base.index, STREAM_TWIN);
        let transform = Affine::random_twin(opts.size as f32 / 64.0, &mut twin_rng);
        let mut encode_rng = Rng::stream(opts.seed, base.index, STREAM_TWIN_ENCODE);
        // Half the twins keep the original's format, so "same format" cannot be the cue.
        let format = if encode_rng.chance(0.5) {
            base.encoding.format()
        } else {
            choose_format(&opts.formats, &mut encode_rng)
        };
        let encoding = Encoding::choose(format, &mut encode_rng);
        let mut noise = Rng::stream(opts.seed, base.index, STREAM_TWIN_NOISE);
        let obs = base
            .scene
            .observe(Some(&transform), encoding.channels(), &mut noise);
        let bytes = encode(encoding, &obs, &mut encode_rng)?;
        let path = plan.twin_path(index, format);
        write_file(&dir.join(&path), &bytes)?;
        out.push(Written {
            path,
            label: base.scene.label,
            twin_of: Some(base.path),
            encoding,
            bytes: bytes.len() as u64,
        });
    }
    Ok(out)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------------------------

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn splitmix(z: u64) -> u64 {
    let mut z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++ (Blackman & Vigna), seeded through SplitMix64 as its authors recommend.
struct Rng {
    s: [u64; 4],
    spare: Option<f32>,
}

impl Rng {
    fn stream(seed: u64, index: u64, purpose: u64) -> Rng {
        let mut h = splitmix(splitmix(seed) ^ index);
        h = splitmix(h ^ purpose.wrapping_mul(GOLDEN));
        let mut s = [0u64; 4];
        for word in &mut s {
            h = splitmix(h);
            *word = h;
        }
        Rng { s, spare: None }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f32()
    }

    /// Log-uniform: brightnesses and sizes spread over decades.
    fn log_range(&mut self, lo: f32, hi: f32) -> f32 {
        fm::exp(self.range(fm::ln(lo), fm::ln(hi)))
    }

    fn angle(&mut self) -> f32 {
        self.range(0.0, TAU)
    }

    fn sign(&mut self) -> f32 {
        if self.chance(0.5) {
            1.0
        } else {
            -1.0
        }
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    fn chance(&mut self, p: f32) -> bool {
        self.f32() < p
    }

    /// Standard normal (Marsaglia's polar method: no trigonometry, two values per accept).
    fn normal(&mut self) -> f32 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        loop {
            let u = 2.0 * self.f32() - 1.0;
            let v = 2.0 * self.f32() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let k = (-2.0 * fm::ln(s) / s).sqrt();
                self.spare = Some(v * k);
                return u * k;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Portable fast maths
// ---------------------------------------------------------------------------------------------

/// Transcendental functions built only from IEEE-exact operations (+ − × ÷, sqrt, rounding,
/// bit casts). libm's results may differ in the last bit between C libraries and CPUs (glibc
/// picks FMA variants at run time), which would make archives differ between machines; these
/// give the same bits everywhere, since Rust never contracts a·b+c into an FMA. They are also
/// faster; their errors (~1e-7 relative for exp/ln, <= 1e-6 absolute for the rest) are far
/// below the noise.
mod fm {
    use std::f32::consts::{FRAC_PI_2, LN_2, LOG2_E, PI, SQRT_2, TAU};

    /// Round to nearest (ties to even) for |x| < 2^22: adding 1.5 · 2^23 leaves no fraction
    /// bits. `f32::round` is a libm call on baseline x86-64 and was 8% of the run time.
    #[inline(always)]
    pub fn round(x: f32) -> f32 {
        const MAGIC: f32 = 12_582_912.0;
        (x + MAGIC) - MAGIC
    }

    #[inline]
    pub fn exp(x: f32) -> f32 {
        // e^x = 2^i · e^g with i = round(x log2 e) and g = x - i ln 2 (ln 2 split Cody-Waite
        // style so i · 0.693359375 is exact), |g| <= 0.35; Taylor to degree 7.
        let x = x.clamp(-87.0, 88.0);
        let i = round(x * LOG2_E);
        let g = x - i * 0.693_359_4 + i * 2.121_944_4e-4;
        let p = 1.0
            + g * (1.0
                + g * (0.5
                    + g * (1.0 / 6.0
                        + g * (1.0 / 24.0
                            + g * (1.0 / 120.0 + g * (1.0 / 720.0 + g * (1.0 / 5040.0)))))));
        p * f32::from_bits(((i as i32 + 127) as u32) << 23)
    }

    #[inline]
    pub fn ln(x: f32) -> f32 {
        if x.is_nan() || x < f32::MIN_POSITIVE {
            return if x > 0.0 {
                -87.336_54
            } else {
                f32::NEG_INFINITY
            };
        }
        let bits = x.to_bits();
        let mut e = ((bits >> 23) & 0xff) as i32 - 127;
        let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
        if m > SQRT_2 {
            m *= 0.5;
            e += 1;
        }
        // ln m = 2 atanh s, s = (m-1)/(m+1), |s| <= 0.172.
        let s = (m - 1.0) / (m + 1.0);
        let s2 = s * s;
        let lnm = 2.0
            * s
            * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0)))));
        e as f32 * LN_2 + lnm
    }

    /// x^y for x > 0 (0 for x <= 0).
    #[inline]
    pub fn pow(x: f32, y: f32) -> f32 {
        if x > 0.0 {
            exp(y * ln(x))
        } else {
            0.0
        }
    }

    #[inline]
    pub fn atan2(y: f32, x: f32) -> f32 {
        let (ax, ay) = (x.abs(), y.abs());
        let (lo, hi) = (ax.min(ay), ax.max(ay));
        if hi == 0.0 {
            return 0.0;
        }
        let a = lo / hi;
        let s = a * a;
        // Abramowitz & Stegun 4.4.49: |error| <= 1e-7 on [0, 1].
        let mut r = a
            * (0.999_999_3
                + s * (-0.333_298_56
                    + s * (0.199_465_36
                        + s * (-0.139_085_34
                            + s * (0.096_420_04
                                + s * (-0.055_909_886
                                    + s * (0.021_861_23 + s * -0.004_054_058)))))));
        if ay > ax {
            r = FRAC_PI_2 - r;
        }
        if x < 0.0 {
            r = PI - r;
        }
        if y < 0.0 {
            -r
        } else {
            r
        }
    }

    #[inline]
    pub fn cos(x: f32) -> f32 {
        let r = x - round(x * (1.0 / TAU)) * TAU;
        let (mut a, mut sign) = (r.abs(), 1.0);
        if a > FRAC_PI_2 {
            a = PI - a;
            sign = -1.0;
        }
        let a2 = a * a;
        let c = 1.0
            - a2 * (0.5
                - a2 * (1.0 / 24.0
                    - a2 * (1.0 / 720.0 - a2 * (1.0 / 40_320.0 - a2 * (1.0 / 3_628_800.0)))));
        sign * c
    }

    #[inline]
    pub fn sin(x: f32) -> f32 {
        cos(x - FRAC_PI_2)
    }

    #[inline]
    pub fn sin_cos(x: f32) -> (f32, f32) {
        (sin(x), cos(x))
    }

    #[inline]
    pub fn asinh(x: f32) -> f32 {
        let a = x.abs();
        let r = if a > 1e15 {
            ln(a) + LN_2
        } else {
            ln(a + (a * a + 1.0).sqrt())
        };
        if x < 0.0 {
            -r
        } else {
            r
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Geometry
// ---------------------------------------------------------------------------------------------

/// Maps output-frame coordinates (pixels from the frame centre, y up) to scene coordinates.
/// Twins are made by evaluating the analytic scene through such a map, so rotation by any
/// angle costs no interpolation blur and the twin is exactly the same model.
#[derive(Clone, Copy, Debug)]
struct Affine {
    m: [f32; 4],
    shift: [f32; 2],
}

impl Affine {
    const IDENTITY: Affine = Affine {
        m: [1.0, 0.0, 0.0, 1.0],
        shift: [0.0, 0.0],
    };

    fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        let (x, y) = (x - self.shift[0], y - self.shift[1]);
        (self.m[0] * x + self.m[1] * y, self.m[2] * x + self.m[3] * y)
    }

    /// A rotation and/or a mirror flip and/or a shift of a few pixels; never the identity.
    fn random_twin(scale: f32, rng: &mut Rng) -> Affine {
        let mut rotate = rng.chance(0.75);
        let flip = rng.chance(0.5);
        let shift = rng.chance(0.6);
        if !(rotate || flip || shift) {
            rotate = true;
        }
        let theta = if rotate {
            rng.range(0.2, TAU - 0.2)
        } else {
            0.0
        };
        let (s, c) = fm::sin_cos(theta);
        // Inverse of "rotate by theta, then flip x": flip x, then rotate by -theta.
        let f = if flip { -1.0 } else { 1.0 };
        let m = [f * c, f * s, -s, c];
        let shift = if shift {
            [rng.range(-4.0, 4.0) * scale, rng.range(-4.0, 4.0) * scale]
        } else {
            [0.0, 0.0]
        };
        Affine { m, shift }
    }
}

/// Sérsic b_n (Ciotti & Bertin 1999 expansion), so that r_e encloses half the light.
fn sersic_b(n: f32) -> f32 {
    2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n * n)
}

/// sech² without overflow for large |x|.
fn sech2(x: f32) -> f32 {
    let e = fm::exp(-2.0 * x.abs());
    4.0 * e / ((1.0 + e) * (1.0 + e))
}

// ---------------------------------------------------------------------------------------------
// Model components (surface brightness in electrons per pixel, before the PSF)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Comp {
    /// Elliptical Sérsic profile; `soft` stands in for integrating the cusp over a pixel.
    Sersic {
        x: f32,
        y: f32,
        ie: f32,
        inv_re2: f32,
        half_inv_n: f32,
        bn: f32,
        inv_q: f32,
        cos: f32,
        sin: f32,
        soft2: f32,
        rmax2: f32,
    },
    /// Inclined exponential disk with an m=2 logarithmic spiral density wave.
    Disk {
        x: f32,
        y: f32,
        i0: f32,
        inv_h: f32,
        inv_cosi: f32,
        cos: f32,
        sin: f32,
        spiral: Option<Spiral>,
    },
    /// Edge-on disk (exponential along, sech² across) with its bulge, both behind a dust lane.
    EdgeOn {
        x: f32,
        y: f32,
        i0: f32,
        inv_h: f32,
        soft2: f32,
        inv_z0: f32,
        cos: f32,
        sin: f32,
        bulge: f32,
        bulge_re: f32,
        bulge_inv_q: f32,
        dust_tau: f32,
        dust_off: f32,
        dust_inv_w: f32,
        dust_inv_len: f32,
    },
    /// Moffat star, optionally with four faint diffraction spikes.
    Moffat {
        x: f32,
        y: f32,
        amp: f32,
        inv_a2: f32,
        beta: f32,
        rmax2: f32,
        spikes: f32,
        s_cos: f32,
        s_sin: f32,
        s_inv_w2: f32,
        s_inv_len: f32,
    },
    Gauss {
        x: f32,
        y: f32,
        amp: f32,
        inv_2s2: f32,
        rmax2: f32,
    },
    /// Tidal tail or bridge: a Gaussian ridge along a polyline whose log-brightness and
    /// width vary linearly along each segment. Points are `[x, y, width, ln brightness]`.
    Stream {
        pts: Vec<[f32; 4]>,
        rmax2: f32,
        centre: [f32; 2],
    },
    /// Satellite trail: an infinite straight ridge, optionally glinting along its length.
    Line {
        nx: f32,
        ny: f32,
        d: f32,
        amp: f32,
        inv_2w2: f32,
        glint: f32,
        glint_k: f32,
        glint_phase: f32,
    },
}

#[derive(Clone, Debug)]
struct Spiral {
    strength: f32,
    wind: f32,
    phase: f32,
    sharp: i32,
    norm: f32,
    inv_core: f32,
}

impl Comp {
    /// Adds this component at the scene points `(xs, ys)` to `out`. Each arm is its own
    /// loop so the variant is tested once per image rather than once per pixel.
    fn accumulate(&self, xs: &[f32], ys: &[f32], out: &mut [f32]) {
        macro_rules! each_pixel {
            () => {
                for ((o, &x), &y) in out.iter_mut().zip(xs).zip(ys) {
                    *o += self.eval(x, y);
                }
            };
        }
        match self {
            Comp::Sersic { .. } => each_pixel!(),
            Comp::Disk { .. } => each_pixel!(),
            Comp::EdgeOn { .. } => each_pixel!(),
            Comp::Moffat { .. } => each_pixel!(),
            Comp::Gauss { .. } => each_pixel!(),
            Comp::Stream { .. } => each_pixel!(),
            Comp::Line { .. } => each_pixel!(),
        }
    }

    #[inline(always)]
    fn eval(&self, px: f32, py: f32) -> f32 {
        match self {
            Comp::Sersic {
                x,
                y,
                ie,
                inv_re2,
                half_inv_n,
                bn,
                inv_q,
                cos,
                sin,
                soft2,
                rmax2,
            } => {
                let (dx, dy) = (px - x, py - y);
                if dx * dx + dy * dy > *rmax2 {
                    return 0.0;
                }
                let u = dx * cos + dy * sin;
                let v = (-dx * sin + dy * cos) * inv_q;
                let r2 = (u * u + v * v + soft2) * inv_re2;
                ie * fm::exp(-bn * (fm::pow(r2, *half_inv_n) - 1.0))
            }
            Comp::Disk {
                x,
                y,
                i0,
                inv_h,
                inv_cosi,
                cos,
                sin,
                spiral,
            } => {
                let (dx, dy) = (px - x, py - y);
                let u = dx * cos + dy * sin;
                let v = (-dx * sin + dy * cos) * inv_cosi;
                let r = (u * u + v * v).sqrt();
                let mut value = i0 * fm::exp(-r * inv_h);
                if let Some(sp) = spiral {
                    let phi = fm::atan2(v, u);
                    let lr = fm::ln((r * inv_h).max(1e-3));
                    let psi = 2.0 * (phi - lr * sp.wind - sp.phase);
                    let base = 0.5 + 0.5 * fm::cos(psi);
                    let mut m = base;
                    for _ in 1..sp.sharp {
                        m *= base;
                    }
                    let rc = r * sp.inv_core;
                    let w = sp.strength * (1.0 - fm::exp(-rc * rc));
                    value *= 1.0 - w + w * m * sp.norm;
                }
                value
            }
            Comp::EdgeOn {
                x,
                y,
                i0,
                inv_h,
                soft2,
                inv_z0,
                cos,
                sin,
                bulge,
                bulge_re,
                bulge_inv_q,
                dust_tau,
                dust_off,
                dust_inv_w,
                dust_inv_len,
            } => {
                let (dx, dy) = (px - x, py - y);
                let u = dx * cos + dy * sin;
                let v = -dx * sin + dy * cos;
                let disk = fm::exp(-(u * u + soft2).sqrt() * inv_h) * sech2(v * inv_z0);
                let rb = (u * u + (v * bulge_inv_q) * (v * bulge_inv_q) + 0.25).sqrt() / bulge_re;
                let bn2 = sersic_b(2.0);
                let blg = bulge * fm::exp(-bn2 * (rb.sqrt() - 1.0));
                let dz = (v - dust_off) * dust_inv_w;
                let dl = u * dust_inv_len;
                let att = 1.0 - dust_tau * fm::exp(-0.5 * dz * dz - dl * dl);
                i0 * (disk + blg) * att
            }
            Comp::Moffat {
                x,
                y,
                amp,
                inv_a2,
                beta,
                rmax2,
                spikes,
                s_cos,
                s_sin,
                s_inv_w2,
                s_inv_len,
            } => {
                let (dx, dy) = (px - x, py - y);
                let r2 = dx * dx + dy * dy;
                let mut value = 0.0;
                if r2 <= *rmax2 {
                    value = amp * fm::pow(1.0 + r2 * inv_a2, -beta);
                }
                if *spikes > 0.0 {
                    let a = dx * s_cos + dy * s_sin;
                    let b = -dx * s_sin + dy * s_cos;
                    let along = |t: f32| {
                        let f = 1.0 / (1.0 + t.abs() * s_inv_len);
                        f * f.sqrt()
                    };
                    value += amp
                        * spikes
                        * (fm::exp(-b * b * s_inv_w2) * along(a)
                            + fm::exp(-a * a * s_inv_w2) * along(b));
                }
                value
            }
            Comp::Gauss {
                x,
                y,
                amp,
                inv_2s2,
                rmax2,
            } => {
                let (dx, dy) = (px - x, py - y);
                let r2 = dx * dx + dy * dy;
                if r2 > *rmax2 {
                    return 0.0;
                }
                amp * fm::exp(-r2 * inv_2s2)
            }
            Comp::Stream { pts, rmax2, centre } => {
                let (dx, dy) = (px - centre[0], py - centre[1]);
                if dx * dx + dy * dy > *rmax2 {
                    return 0.0;
                }
                // The brightest nearby segment wins, so joints are not counted twice; working
                // in log-brightness needs only one exp per pixel.
                let mut best = f32::NEG_INFINITY;
                for pair in pts.windows(2) {
                    let [x0, y0, w0, l0] = pair[0];
                    let [x1, y1, w1, l1] = pair[1];
                    let (ex, ey) = (x1 - x0, y1 - y0);
                    let len2 = (ex * ex + ey * ey).max(1e-6);
                    let t = (((px - x0) * ex + (py - y0) * ey) / len2).clamp(0.0, 1.0);
                    let (cx, cy) = (x0 + t * ex - px, y0 + t * ey - py);
                    let w = w0 + t * (w1 - w0);
                    let score = l0 + t * (l1 - l0) - (cx * cx + cy * cy) / (2.0 * w * w);
                    best = best.max(score);
                }
                fm::exp(best)
            }
            Comp::Line {
                nx,
                ny,
                d,
                amp,
                inv_2w2,
                glint,
                glint_k,
                glint_phase,
            } => {
                let dist = px * nx + py * ny - d;
                let base = amp * fm::exp(-dist * dist * inv_2w2);
                if *glint > 0.0 {
                    let along = -px * ny + py * nx;
                    base * (1.0 + glint * fm::sin(along * glint_k + glint_phase))
                } else {
                    base
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)] // the profile's parameters, in the order astronomers quote them
fn sersic(x: f32, y: f32, ie: f32, re: f32, n: f32, q: f32, pa: f32, reach: f32) -> Comp {
    let (sin, cos) = fm::sin_cos(pa);
    let rmax = reach * re / q.max(0.2);
    Comp::Sersic {
        x,
        y,
        ie,
        inv_re2: 1.0 / (re * re),
        half_inv_n: 0.5 / n,
        bn: sersic_b(n),
        inv_q: 1.0 / q,
        cos,
        sin,
        soft2: 0.25,
        rmax2: rmax * rmax,
    }
}

fn gauss(x: f32, y: f32, amp: f32, sigma: f32) -> Comp {
    let rmax = 5.0 * sigma;
    Comp::Gauss {
        x,
        y,
        amp,
        inv_2s2: 1.0 / (2.0 * sigma * sigma),
        rmax2: rmax * rmax,
    }
}

/// Moffat with core FWHM `fwhm` (the PSF convolution broadens it further).
fn moffat(x: f32, y: f32, amp: f32, fwhm: f32, beta: f32) -> Comp {
    let alpha = fwhm / (2.0 * (fm::pow(2.0, 1.0 / beta) - 1.0).sqrt());
    // Cut where the profile has fallen to ~1e-5 of its peak.
    let rmax = alpha * (fm::pow(1e5, 1.0 / beta) - 1.0).sqrt();
    Comp::Moffat {
        x,
        y,
        amp,
        inv_a2: 1.0 / (alpha * alpha),
        beta,
        rmax2: rmax * rmax,
        spikes: 0.0,
        s_cos: 1.0,
        s_sin: 0.0,
        s_inv_w2: 1.0,
        s_inv_len: 1.0,
    }
}

/// Quadratic Bézier from `p0` via `p1` to `p2`, sampled as a polyline for [`Comp::Stream`];
/// brightness goes from `amp.0` to `amp.1` as `t^fade`, width linearly.
fn stream(
    p0: [f32; 2],
    p1: [f32; 2],
    p2: [f32; 2],
    w: (f32, f32),
    amp: (f32, f32),
    fade: f32,
) -> Comp {
    const K: usize = 12;
    let mut pts = Vec::with_capacity(K + 1);
    for k in 0..=K {
        let t = k as f32 / K as f32;
        let (a, b, c) = ((1.0 - t) * (1.0 - t), 2.0 * (1.0 - t) * t, t * t);
        pts.push([
            a * p0[0] + b * p1[0] + c * p2[0],
            a * p0[1] + b * p1[1] + c * p2[1],
            w.0 + (w.1 - w.0) * t,
            fm::ln((amp.0 + (amp.1 - amp.0) * fm::pow(t, fade)).max(1e-12)),
        ]);
    }
    // Beyond 6 widths of every point the ridge is below 1e-7 of its brightness.
    let n = pts.len() as f32;
    let centre = [
        pts.iter().map(|p| p[0]).sum::<f32>() / n,
        pts.iter().map(|p| p[1]).sum::<f32>() / n,
    ];
    let reach = pts
        .iter()
        .map(|p| {
            ((p[0] - centre[0]) * (p[0] - centre[0]) + (p[1] - centre[1]) * (p[1] - centre[1]))
                .sqrt()
                + 6.0 * p[2]
        })
        .fold(0.0f32, f32::max);
    Comp::Stream {
        pts,
        rmax2: reach * reach,
        centre,
    }
}

// ---------------------------------------------------------------------------------------------
// Scenes
// ---------------------------------------------------------------------------------------------

/// Detector defects: fixed to the pixel grid, added after the sky is imaged.
#[derive(Clone, Debug)]
enum Defect {
    /// Saturated column `col` between rows `rows.0..rows.1` (row 0 = top), value in ADU.
    Column {
        col: usize,
        rows: (usize, usize),
        adu: f32,
    },
    /// Charge (electrons) dumped straight into one pixel by a cosmic ray.
    Hit {
        col: usize,
        row: usize,
        electrons: f32,
    },
}

/// One noiseless scene plus how it is observed. `observe` turns it into pixels; a twin is
/// the same scene observed through another [`Affine`] with fresh noise.
struct Scene {
    label: Label,
    size: usize,
    /// The labelled object; multiplied by `main_gain`.
    main: Vec<Comp>,
    main_gain: f32,
    /// `main` sampled untransformed at unit gain: needed for the brightness normalisation
    /// anyway, and reused for the base image, which halves the model evaluations.
    main_canvas: Vec<f32>,
    /// Faint background sources and satellite trails, in electrons.
    extra: Vec<Comp>,
    defects: Vec<Defect>,
    psf_sigma: f32,
    sky: f32,
    read_noise: f32,
    gain: f32,
    /// ADU added after dividing by the gain: a bias level for "raw" frames, minus the sky
    /// for sky-subtracted ones. Archives mix both.
    pedestal: f32,
    raw: bool,
    colour: [f32; 3],
    /// Chance of a stray cosmic ray or two in each exposure (not the cosmic-rays class).
    stray_hits: f32,
}

/// Peak signal-to-noise (against the sky noise) of the main object, drawn log-uniformly.
fn peak_snr(label: Label) -> (f32, f32) {
    match label {
        Label::Disk => (25.0, 300.0),
        Label::EdgeOn => (20.0, 300.0),
        Label::Merger => (25.0, 300.0),
        Label::PointSource => (15.0, 2000.0),
        _ => (3.0, 12.0),
    }
}

impl Scene {
    fn new(label: Label, size: usize, rng: &mut Rng) -> Scene {
        let s = size as f32 / 64.0;
        let half = size as f32 / 2.0;
        let psf_sigma = rng.range(0.75, 1.15) * s;
        let sky = rng.log_range(40.0, 3000.0);
        let read_noise = rng.range(3.0, 12.0);
        let gain = rng.range(0.8, 4.0);
        let raw = rng.chance(0.4);
        let sigma = (sky + read_noise * read_noise).sqrt();
        let pedestal = if raw {
            rng.range(100.0, 1200.0).round()
        } else {
            -sky / gain
        };
        let centre = [rng.range(-2.0, 2.0) * s, rng.range(-2.0, 2.0) * s];

        let morphology = if label.is_artefact() {
            // Artefacts show a faint source half of the time, or only sky.
            rng.chance(0.5).then(|| Label::MORPHOLOGIES[rng.below(5)])
        } else {
            Some(label)
        };
        let main = match morphology {
            Some(m) => make_object(m, centre, s, rng),
            None => Vec::new(),
        };
        let colour = jitter_colour(morphology, rng);

        let mut extra = Vec::new();
        let n_bg = rng.below((6.0 * s * s) as usize + 1);
        for _ in 0..n_bg {
            // Keep background sources off the main object so they do not change its class.
            let mut pos = [0.0, 0.0];
            for _ in 0..8 {
                pos = [rng.range(-half, half), rng.range(-half, half)];
                let (dx, dy) = (pos[0] - centre[0], pos[1] - centre[1]);
                if dx * dx + dy * dy > (12.0 * s) * (12.0 * s) {
                    break;
                }
            }
            if rng.chance(0.7) {
                let re = rng.range(0.6, 2.5) * s;
                let n = rng.range(0.7, 3.0);
                extra.push(sersic(
                    pos[0],
                    pos[1],
                    sigma * rng.log_range(0.3, 3.0),
                    re,
                    n,
                    rng.range(0.35, 1.0),
                    rng.angle(),
                    8.0,
                ));
            } else {
                extra.push(moffat(
                    pos[0],
                    pos[1],
                    sigma * rng.log_range(3.0, 60.0),
                    rng.range(1.0, 1.6) * s,
                    3.0,
                ));
            }
        }

        let mut defects = Vec::new();
        match label {
            Label::SatelliteTrail => {
                let theta = rng.angle();
                let (ny, nx) = fm::sin_cos(theta);
                let glint = if rng.chance(0.4) {
                    rng.range(0.15, 0.5)
                } else {
                    0.0
                };
                extra.push(Comp::Line {
                    nx,
                    ny,
                    d: rng.range(-0.6, 0.6) * half,
                    amp: sigma * rng.log_range(8.0, 300.0),
                    inv_2w2: {
                        let w = rng.range(0.5, 1.3) * s;
                        1.0 / (2.0 * w * w)
                    },
                    glint,
                    glint_k: TAU / (rng.range(6.0, 30.0) * s),
                    glint_phase: rng.angle(),
                });
            }
            Label::HotColumn => {
                let adu = rng.range(20_000.0, 65_000.0);
                let n_cols = if rng.chance(0.6) { 1 } else { 2 + rng.below(2) };
                let adjacent = rng.chance(0.75);
                let first = rng.below(size - n_cols);
                for k in 0..n_cols {
                    let col = if adjacent { first + k } else { rng.below(size) };
                    // Some columns bleed from a point to the edge of the chip instead of
                    // spanning it.
                    let rows = if rng.chance(0.3) {
                        let start = rng.below(size);
                        if rng.chance(0.5) {
                            (0, start)
                        } else {
                            (start, size)
                        }
                    } else {
                        (0, size)
                    };
                    defects.push(Defect::Column { col, rows, adu });
                }
            }
            Label::CosmicRays => {
                let count = (rng.range(15.0, 60.0) * s * s) as usize;
                for _ in 0..count {
                    add_cosmic_ray(&mut defects, size, sigma, rng);
                }
            }
            _ => {}
        }

        let mut scene = Scene {
            label,
            size,
            main,
            main_gain: 1.0,
            main_canvas: Vec::new(),
            extra,
            defects,
            psf_sigma,
            sky,
            read_noise,
            gain,
            pedestal,
            raw,
            colour,
            stray_hits: if label.is_artefact() { 0.0 } else { 0.05 },
        };
        if !scene.main.is_empty() {
            scene.main_canvas = scene.sample(&Affine::IDENTITY, &scene.main);
        }
        if label == Label::Elliptical {
            // A Sérsic n~4 cusp set to a modest peak would leave only a star-like core, so
            // ellipticals are scaled by their surface brightness at r_e (amplitude 1 there).
            scene.main_gain = rng.log_range(3.0, 25.0) * sigma;
        } else if !scene.main.is_empty() {
            // Brightness is set by the peak the unrotated main object reaches after the
            // PSF; the gain is a scene property, so a twin inherits it unchanged.
            let (lo, hi) = peak_snr(label);
            let target = rng.log_range(lo, hi) * sigma;
            let kernel = gaussian_kernel(scene.psf_sigma);
            let image = convolve(&scene.main_canvas, scene.canvas_size(), &kernel, size);
            let peak = image.iter().copied().fold(0.0f32, f32::max);
            scene.main_gain = if peak > 0.0 { target / peak } else { 0.0 };
        }
        scene
    }

    fn kernel_radius(&self) -> usize {
        gaussian_kernel(self.psf_sigma).len() / 2
    }

    fn canvas_size(&self) -> usize {
        self.size + 2 * self.kernel_radius()
    }

    /// Samples `comps` through `t` on the output grid plus a margin as wide as the PSF
    /// kernel, so light from just outside the frame still spills in after convolution.
    fn sample(&self, t: &Affine, comps: &[Comp]) -> Vec<f32> {
        let r = self.kernel_radius() as f32;
        let cs = self.canvas_size();
        let half = self.size as f32 / 2.0;
        let mut canvas = vec![0.0f32; cs * cs];
        if comps.is_empty() {
            return canvas;
        }
        let mut xs = Vec::with_capacity(cs * cs);
        let mut ys = Vec::with_capacity(cs * cs);
        for row in 0..cs {
            let y = half - (row as f32 - r + 0.5);
            for col in 0..cs {
                let (sx, sy) = t.apply(col as f32 - r + 0.5 - half, y);
                xs.push(sx);
                ys.push(sy);
            }
        }
        for c in comps {
            c.accumulate(&xs, &ys, &mut canvas);
        }
        canvas
    }

    /// The noiseless model in electrons on the output grid (row 0 = top), PSF applied;
    /// `None` means untransformed.
    fn rasterize(&self, t: Option<&Affine>) -> Vec<f32> {
        let mut canvas = self.sample(t.unwrap_or(&Affine::IDENTITY), &self.extra);
        let fresh;
        let main = match t {
            None => &self.main_canvas,
            Some(t) => {
                fresh = self.sample(t, &self.main);
                &fresh
            }
        };
        if !self.main.is_empty() {
            for (c, m) in canvas.iter_mut().zip(main) {
                *c += m * self.main_gain;
            }
        }
        let kernel = gaussian_kernel(self.psf_sigma);
        convolve(&canvas, self.canvas_size(), &kernel, self.size)
    }

    fn observe(&self, t: Option<&Affine>, channels: usize, rng: &mut Rng) -> Observation {
        let size = self.size;
        let model = self.rasterize(t);
        let peak = model.iter().copied().fold(0.0f32, f32::max);
        let rn2 = self.read_noise * self.read_noise;

        let mut hits: Vec<(usize, f32)> = Vec::new();
        let mut defects = self.defects.clone();
        if rng.chance(self.stray_hits) {
            let sigma = (self.sky + rn2).sqrt();
            for _ in 0..1 + rng.below(2) {
                add_cosmic_ray(&mut defects, size, sigma, rng);
            }
        }
        for d in &defects {
            if let Defect::Hit {
                col,
                row,
                electrons,
            } = *d
            {
                hits.push((row * size + col, electrons));
            }
        }

        let inv_gain = 1.0 / self.gain;
        let mut planes = Vec::with_capacity(channels);
        for c in 0..channels {
            let g = if channels == 3 { self.colour[c] } else { 1.0 };
            let mut plane: Vec<f32> = model
                .iter()
                .map(|&m| {
                    let e = m * g + self.sky;
                    // Gaussian approximation to Poisson shot noise plus read noise.
                    let sd = (e.max(0.0) + rn2).sqrt();
                    e + sd * rng.normal()
                })
                .collect();
            for &(p, e) in &hits {
                plane[p] += e;
            }
            for v in &mut plane {
                *v = *v * inv_gain + self.pedestal;
            }
            for d in &defects {
                if let Defect::Column { col, rows, adu } = *d {
                    for row in rows.0..rows.1 {
                        plane[row * size + col] = adu;
                    }
                }
            }
            planes.push(plane);
        }
        let max_colour = if channels == 3 {
            self.colour.iter().copied().fold(0.0, f32::max)
        } else {
            1.0
        };
        Observation {
            size,
            planes,
            sky: if self.raw {
                self.sky * inv_gain + self.pedestal
            } else {
                0.0
            },
            sigma: (self.sky + rn2).sqrt() * inv_gain,
            peak: peak * max_colour * inv_gain,
            raw: self.raw,
        }
    }
}

fn jitter_colour(morphology: Option<Label>, rng: &mut Rng) -> [f32; 3] {
    // Rough R, G, B ratios: old stellar populations red, star-forming disks blue,
    // dusty edge-ons reddened.
    let base = match morphology {
        Some(Label::Elliptical) => [1.15, 1.0, 0.82],
        Some(Label::Disk) => [0.94, 1.0, 1.10],
        Some(Label::EdgeOn) => [1.10, 1.0, 0.88],
        Some(Label::Merger) => [1.0, 1.0, 1.04],
        Some(Label::PointSource) => {
            let t = rng.range(-0.2, 0.25);
            [1.0 + t, 1.0, 1.0 - t]
        }
        _ => [1.0, 1.0, 1.0],
    };
    let mut c = base;
    for v in &mut c {
        *v *= rng.range(0.95, 1.05);
    }
    c
}

fn add_cosmic_ray(defects: &mut Vec<Defect>, size: usize, sigma: f32, rng: &mut Rng) {
    // 1-3 px hits: a single pixel, or a short worm through neighbouring pixels.
    let len = 1 + rng.below(3);
    let (mut col, mut row) = (rng.below(size) as isize, rng.below(size) as isize);
    let electrons = sigma * rng.log_range(15.0, 600.0);
    for k in 0..len {
        if k > 0 {
            col += rng.below(3) as isize - 1;
            row += rng.below(3) as isize - 1;
        }
        if (0..size as isize).contains(&col) && (0..size as isize).contains(&row) {
            let e = electrons * rng.range(0.4, 1.0);
            defects.push(Defect::Hit {
                col: col as usize,
                row: row as usize,
                electrons: e,
            });
        }
    }
}

/// The labelled object, with amplitudes in arbitrary units (`Scene::new` rescales them).
fn make_object(label: Label, c: [f32; 2], s: f32, rng: &mut Rng) -> Vec<Comp> {
    match label {
        Label::Disk => make_disk(c, s, rng),
        Label::Elliptical => {
            let n = rng.range(2.5, 5.0);
            let re = rng.log_range(3.0, 8.0) * s;
            vec![sersic(
                c[0],
                c[1],
                1.0,
                re,
                n,
                rng.range(0.45, 1.0),
                rng.angle(),
                12.0,
            )]
        }
        Label::EdgeOn => make_edge_on(c, s, rng),
        Label::Merger => make_merger(c, s, rng),
        Label::PointSource => {
            let beta = rng.range(2.5, 4.5);
            let mut star = moffat(c[0], c[1], 1.0, rng.range(1.0, 2.0) * s, beta);
            if rng.chance(0.5) {
                if let Comp::Moffat {
                    spikes,
                    s_cos,
                    s_sin,
                    s_inv_w2,
                    s_inv_len,
                    ..
                } = &mut star
                {
                    // Spider vanes: usually aligned with the pixel grid, sometimes not.
                    let angle = if rng.chance(0.7) {
                        0.0
                    } else {
                        rng.range(0.0, PI / 2.0)
                    };
                    (*s_sin, *s_cos) = fm::sin_cos(angle);
                    *spikes = rng.log_range(0.004, 0.03);
                    *s_inv_w2 = 1.0 / (2.0 * (0.45 * s) * (0.45 * s));
                    *s_inv_len = 1.0 / (rng.range(2.0, 4.0) * s);
                }
            }
            vec![star]
        }
        _ => unreachable!("artefacts have no object model"),
    }
}

fn make_disk(c: [f32; 2], s: f32, rng: &mut Rng) -> Vec<Comp> {
    let h = rng.range(3.5, 7.5) * s;
    let cosi = rng.range(0.35, 1.0);
    let pa = rng.angle();
    let (sin, cos) = fm::sin_cos(pa);
    let sharp = 1 + rng.below(3) as i32;
    // Mean of ((1 + cos ψ)/2)^k over ψ is C(2k, k) / 4^k; `norm` keeps the arms from
    // changing the disk's total light.
    let norm = match sharp {
        1 => 2.0,
        2 => 8.0 / 3.0,
        _ => 16.0 / 5.0,
    };
    let pitch = rng.range(12.0f32, 28.0).to_radians();
    let wind = rng.sign() / pitch.tan();
    let phase = rng.angle();
    let spiral = Spiral {
        strength: rng.range(0.55, 0.9),
        wind,
        phase,
        sharp,
        norm,
        inv_core: 1.0 / (rng.range(0.5, 0.9) * h),
    };
    let mut comps = vec![Comp::Disk {
        x: c[0],
        y: c[1],
        i0: 1.0,
        inv_h: 1.0 / h,
        inv_cosi: 1.0 / cosi,
        cos,
        sin,
        spiral: Some(spiral),
    }];
    let bulge_re = rng.range(0.2, 0.45) * h;
    comps.push(sersic(
        c[0],
        c[1],
        rng.range(0.3, 1.5),
        bulge_re,
        rng.range(1.5, 3.0),
        cosi.max(0.6),
        pa,
        15.0,
    ));
    // Star-forming knots strung along the arms.
    for _ in 0..rng.below(7) {
        let r = rng.range(0.8, 2.6) * h;
        let arm = if rng.chance(0.5) { 0.0 } else { PI };
        let phi = fm::ln(r / h) * wind + phase + arm + rng.range(-0.15, 0.15);
        let (u, v) = (r * fm::cos(phi), r * fm::sin(phi) * cosi);
        let (x, y) = (c[0] + u * cos - v * sin, c[1] + u * sin + v * cos);
        comps.push(gauss(
            x,
            y,
            fm::exp(-r / h) * rng.range(0.6, 1.6),
            rng.range(0.5, 0.9) * s,
        ));
    }
    comps
}

fn make_edge_on(c: [f32; 2], s: f32, rng: &mut Rng) -> Vec<Comp> {
    let h = rng.range(6.0, 11.0) * s;
    let z0 = h * rng.range(0.11, 0.2);
    let (sin, cos) = fm::sin_cos(rng.angle());
    // At these scales a lane narrower than the PSF would vanish, so it is at least about a
    // PSF wide and it crosses a fairly round bulge, where real lanes show best.
    let lane = (z0 * rng.range(0.5, 0.8)).max(rng.range(0.8, 1.1) * s);
    vec![Comp::EdgeOn {
        x: c[0],
        y: c[1],
        i0: 1.0,
        inv_h: 1.0 / h,
        soft2: (0.3 * h) * (0.3 * h),
        inv_z0: 1.0 / z0,
        cos,
        sin,
        bulge: rng.range(0.2, 1.0),
        bulge_re: rng.range(0.3, 0.55) * h,
        bulge_inv_q: 1.0 / rng.range(0.6, 0.9),
        dust_tau: rng.range(0.7, 0.97),
        dust_off: lane * rng.range(-0.4, 0.4),
        dust_inv_w: 1.0 / lane,
        dust_inv_len: 1.0 / (h * rng.range(1.5, 3.0)),
    }]
}

fn make_merger(c: [f32; 2], s: f32, rng: &mut Rng) -> Vec<Comp> {
    let sep = rng.range(5.0, 13.0) * s;
    let (ay, ax) = fm::sin_cos(rng.angle());
    let a = [c[0] - 0.5 * sep * ax, c[1] - 0.5 * sep * ay];
    let b = [c[0] + 0.5 * sep * ax, c[1] + 0.5 * sep * ay];
    let mut comps = Vec::new();
    let mut level = [0.0f32; 2];
    for (k, p) in [a, b].into_iter().enumerate() {
        let bright = if k == 0 { 1.0 } else { rng.range(0.3, 1.0) };
        let re = rng.range(1.5, 4.0) * s;
        let comp = if rng.chance(0.6) {
            sersic(
                p[0],
                p[1],
                bright,
                re,
                rng.range(1.0, 4.0),
                rng.range(0.5, 1.0),
                rng.angle(),
                12.0,
            )
        } else {
            let (sin, cos) = fm::sin_cos(rng.angle());
            Comp::Disk {
                x: p[0],
                y: p[1],
                i0: bright * 3.0,
                inv_h: 1.0 / re,
                inv_cosi: 1.0 / rng.range(0.4, 1.0),
                cos,
                sin,
                spiral: None,
            }
        };
        // Tails are scaled to the galaxy's brightness one effective radius out, which
        // (unlike its cusp) is well defined for every profile.
        level[k] = comp.eval(p[0] + re, p[1]).max(comp.eval(p[0], p[1] + re));
        comps.push(comp);
    }
    // Tidal tails: both launched away from the partner and curling the same way round,
    // giving the S shape of a prograde encounter.
    let (ux, uy) = (ax, ay);
    let turn = rng.sign();
    let (nx, ny) = (-uy * turn, ux * turn);
    let len = rng.range(10.0, 22.0) * s;
    let w0 = rng.range(1.0, 1.8) * s;
    let w1 = w0 * rng.range(1.5, 2.5);
    let tails = if rng.chance(0.6) { 2 } else { 1 };
    for (p, dir, level) in [(a, -1.0, level[0]), (b, 1.0, level[1])]
        .into_iter()
        .take(tails)
    {
        let (dx, dy) = (ux * dir, uy * dir);
        let (px, py) = (nx * dir, ny * dir);
        let p1 = [
            p[0] + dx * len * 0.7 + px * len * 0.2,
            p[1] + dy * len * 0.7 + py * len * 0.2,
        ];
        let p2 = [
            p[0] + dx * len * 0.5 + px * len * 0.9,
            p[1] + dy * len * 0.5 + py * len * 0.9,
        ];
        let a0 = level * rng.range(0.4, 0.9);
        comps.push(stream(
            p,
            p1,
            p2,
            (w0, w1),
            (a0, a0 * rng.range(0.15, 0.4)),
            0.7,
        ));
    }
    if rng.chance(0.5) {
        let mid = [
            c[0] + nx * rng.range(-0.3, 0.3) * sep,
            c[1] + ny * rng.range(-0.3, 0.3) * sep,
        ];
        let a0 = level[0].min(level[1]) * rng.range(0.3, 0.7);
        comps.push(stream(a, mid, b, (w0, w0), (a0, a0), 1.0));
    }
    // Shared diffuse envelope of disturbed light.
    comps.push(sersic(
        c[0],
        c[1],
        level[0] * rng.range(0.05, 0.15),
        sep * rng.range(0.6, 1.0),
        1.0,
        rng.range(0.5, 0.9),
        rng.angle(),
        6.0,
    ));
    comps
}

/// Normalised 1-D Gaussian kernel reaching 3.5 sigma.
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (3.5 * sigma).ceil().max(1.0) as isize;
    let mut k: Vec<f32> = (-r..=r)
        .map(|i| fm::exp(-(i * i) as f32 / (2.0 * sigma * sigma)))
        .collect();
    let sum: f32 = k.iter().sum();
    for v in &mut k {
        *v /= sum;
    }
    k
}

/// Separable convolution of a `cs`×`cs` canvas, keeping the central `size`×`size` part.
fn convolve(canvas: &[f32], cs: usize, kernel: &[f32], size: usize) -> Vec<f32> {
    let mut tmp = vec![0.0f32; cs * size];
    for row in 0..cs {
        let line = &canvas[row * cs..(row + 1) * cs];
        for col in 0..size {
            let window = &line[col..col + kernel.len()];
            tmp[row * size + col] = window.iter().zip(kernel).map(|(a, b)| a * b).sum();
        }
    }
    let mut out = vec![0.0f32; size * size];
    for row in 0..size {
        for (k, &w) in kernel.iter().enumerate() {
            let src = &tmp[(row + k) * size..(row + k + 1) * size];
            let dst = &mut out[row * size..(row + 1) * size];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += w * s;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

struct Observation {
    size: usize,
    planes: Vec<Vec<f32>>,
    /// Sky level, noise and main-object peak in ADU, for choosing a display stretch.
    sky: f32,
    sigma: f32,
    peak: f32,
    raw: bool,
}

fn encode(encoding: Encoding, obs: &Observation, rng: &mut Rng) -> Result<Vec<u8>> {
    let size = obs.size as u32;
    match encoding {
        Encoding::FitsF32 => Ok(fits_f32(obs.size, &obs.planes[0])),
        Encoding::FitsI16 => Ok(fits_i16(obs.size, &obs.planes[0], obs.raw)),
        Encoding::PngGrey8 | Encoding::PngRgb8 | Encoding::JpegGrey | Encoding::JpegRgb => {
            let stretch = Stretch::random(obs, false, rng);
            let n = obs.size * obs.size;
            let channels = obs.planes.len();
            let mut buf = vec![0u8; n * channels];
            for (c, plane) in obs.planes.iter().enumerate() {
                for (p, &v) in plane.iter().enumerate() {
                    buf[p * channels + c] = (stretch.apply(v) * 255.0 + 0.5) as u8;
                }
            }
            let colour = if channels == 3 {
                ExtendedColorType::Rgb8
            } else {
                ExtendedColorType::L8
            };
            let mut out = Vec::new();
            if encoding.format() == Format::Png {
                PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
                    .write_image(&buf, size, size, colour)?;
            } else {
                let quality = 70 + rng.below(26) as u8;
                JpegEncoder::new_with_quality(&mut out, quality)
                    .write_image(&buf, size, size, colour)?;
            }
            Ok(out)
        }
        Encoding::PngGrey16 => {
            let stretch = Stretch::random(obs, true, rng);
            let mut buf = Vec::with_capacity(obs.size * obs.size * 2);
            for &v in &obs.planes[0] {
                let q = (stretch.apply(v) * 65535.0 + 0.5) as u16;
                buf.extend_from_slice(&q.to_ne_bytes());
            }
            let mut out = Vec::new();
            PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
                .write_image(&buf, size, size, ExtendedColorType::L16)?;
            Ok(out)
        }
    }
}

/// Display stretch from ADU to [0, 1], the way survey cutouts and previews are made.
struct Stretch {
    black: f32,
    range: f32,
    /// `Some(softening)` for an asinh stretch, `None` for linear.
    soft: Option<f32>,
    norm: f32,
}

impl Stretch {
    fn random(obs: &Observation, sixteen_bit: bool, rng: &mut Rng) -> Stretch {
        let black = obs.sky - rng.range(0.5, 2.5) * obs.sigma;
        let white = obs.sky + (obs.peak * rng.range(0.5, 1.1)).max(8.0 * obs.sigma);
        let range = white - black;
        // 16-bit files are mostly kept linear (they are "data"), 8-bit previews mostly asinh.
        let linear = rng.chance(if sixteen_bit { 0.6 } else { 0.1 });
        if linear {
            Stretch {
                black,
                range,
                soft: None,
                norm: 1.0,
            }
        } else {
            let soft = obs.sigma * rng.range(1.0, 6.0);
            Stretch {
                black,
                range,
                soft: Some(soft),
                norm: 1.0 / fm::asinh(range / soft),
            }
        }
    }

    fn apply(&self, v: f32) -> f32 {
        let x = v - self.black;
        let y = match self.soft {
            Some(soft) => fm::asinh(x / soft) * self.norm,
            None => x / self.range,
        };
        y.clamp(0.0, 1.0)
    }
}

/// One 80-character FITS header card.
fn card(key: &str, value: &str, comment: &str) -> String {
    let mut c = format!("{key:<8}= {value:>20}");
    if !comment.is_empty() {
        c.push_str(" / ");
        c.push_str(comment);
    }
    c.truncate(80);
    format!("{c:<80}")
}

fn fits_string(s: &str) -> String {
    format!("{:<20}", format!("'{s:<8}'"))
}

/// FITS floats: always with a decimal point and an upper-case exponent, as the standard
/// asks, and exactly representable back in f64 so what readers apply is what we used.
fn fits_real(x: f64) -> String {
    format!("{x:.14E}")
}

fn fits_header(size: usize, bitpix: i32, scaling: Option<(&str, &str)>) -> Vec<u8> {
    let mut cards = vec![
        card("SIMPLE", "T", "conforms to FITS standard"),
        card("BITPIX", &bitpix.to_string(), "array data type"),
        card("NAXIS", "2", "number of array dimensions"),
        card("NAXIS1", &size.to_string(), ""),
        card("NAXIS2", &size.to_string(), ""),
    ];
    if let Some((bzero, bscale)) = scaling {
        cards.push(card("BZERO", bzero, "physical = BZERO + BSCALE * stored"));
        cards.push(card("BSCALE", bscale, ""));
    }
    cards.push(card("BUNIT", &fits_string("ADU"), "pixel unit"));
    cards.push(card(
        "ORIGIN",
        &fits_string("simsite synth"),
        "synthetic test image",
    ));
    cards.push(format!("{:<80}", "END"));
    let mut out: Vec<u8> = cards.concat().into_bytes();
    out.resize(out.len().div_ceil(2880) * 2880, b' ');
    out
}

/// FITS stores the bottom row first (pixel (1,1) is the lower-left corner as displayed), so
/// rows are written in reverse of our top-first order.
fn bottom_up_rows(size: usize, plane: &[f32]) -> impl Iterator<Item = &[f32]> {
    (0..size)
        .rev()
        .map(move |row| &plane[row * size..(row + 1) * size])
}

fn pad_data(out: &mut Vec<u8>) {
    out.resize(out.len().div_ceil(2880) * 2880, 0);
}

fn fits_f32(size: usize, plane: &[f32]) -> Vec<u8> {
    let mut out = fits_header(size, -32, None);
    for row in bottom_up_rows(size, plane) {
        for &v in row {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    pad_data(&mut out);
    out
}

fn fits_i16(size: usize, plane: &[f32], raw: bool) -> Vec<u8> {
    let (lo, hi) = plane
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    // Raw frames use the unsigned-16 convention (BZERO 32768, BSCALE 1) like most cameras;
    // processed ones a fitted linear scale.
    let (bzero_s, bscale_s) = if raw && lo >= -0.5 {
        ("32768".to_string(), "1".to_string())
    } else {
        let bscale = ((hi - lo) as f64 / 65534.0).max(1e-6);
        let bzero = lo as f64 + 32767.0 * bscale;
        (fits_real(bzero), fits_real(bscale))
    };
    let bzero: f64 = bzero_s.parse().expect("formatted number parses");
    let bscale: f64 = bscale_s.parse().expect("formatted number parses");
    let mut out = fits_header(size, 16, Some((&bzero_s, &bscale_s)));
    for row in bottom_up_rows(size, plane) {
        for &v in row {
            let q = ((v as f64 - bzero) / bscale)
                .round()
                .clamp(-32768.0, 32767.0) as i16;
            out.extend_from_slice(&q.to_be_bytes());
        }
    }
    pad_data(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_deals_exact_counts() {
        let opts = SynthOptions {
            n: 1003,
            twins: 0.1,
            artefact_rate: 0.03,
            ..Default::default()
        };
        let plan = Plan::new(&opts);
        let arts = plan.labels.iter().filter(|l| l.is_artefact()).count();
        assert_eq!(arts, 30);
        for m in Label::MORPHOLOGIES {
            let k = plan.labels.iter().filter(|&&l| l == m).count();
            assert!((194..=195).contains(&k), "{m}: {k}");
        }
        assert_eq!(plan.twin.iter().filter(|&&t| t).count(), 100);
        assert!(plan
            .twin
            .iter()
            .zip(&plan.labels)
            .all(|(&t, l)| !t || !l.is_artefact()));
    }

    #[test]
    fn header_cards_are_fits_shaped() {
        let h = fits_header(64, 16, Some(("32768", "1")));
        assert_eq!(h.len(), 2880);
        let text = String::from_utf8(h).unwrap();
        assert!(text.starts_with("SIMPLE  =                    T"));
        assert!(text.contains(&format!("{:<80}", "END")));
        assert!(fits_real(0.5).contains('.') && fits_real(0.5).contains('E'));
    }

    #[test]
    fn fast_maths_is_accurate() {
        let mut rng = Rng::stream(1, 2, 3);
        for _ in 0..200_000 {
            let x = rng.range(-80.0, 80.0);
            let want = (x as f64).exp();
            assert!(((fm::exp(x) as f64 - want) / want).abs() < 4e-7, "exp({x})");
            let y = rng.log_range(1e-30, 1e30);
            let want = (y as f64).ln();
            assert!(
                (fm::ln(y) as f64 - want).abs() < 1e-6 * want.abs().max(1.0),
                "ln({y})"
            );
            let (a, b) = (rng.range(-50.0, 50.0), rng.range(-50.0, 50.0));
            assert!(
                (fm::atan2(a, b) as f64 - (a as f64).atan2(b as f64)).abs() < 1e-6,
                "atan2({a}, {b})"
            );
            let z = rng.range(-100.0, 100.0);
            assert!(
                (fm::cos(z) as f64 - (z as f64).cos()).abs() < 1e-5,
                "cos({z})"
            );
            assert!(
                (fm::sin(z) as f64 - (z as f64).sin()).abs() < 1e-5,
                "sin({z})"
            );
            let want = (z as f64).asinh();
            assert!(
                (fm::asinh(z) as f64 - want).abs() < 1e-6 * want.abs().max(1.0),
                "asinh({z})"
            );
            let (p, q) = (rng.log_range(1e-3, 1e3), rng.range(-4.0, 4.0));
            let want = (p as f64).powf(q as f64);
            assert!(
                ((fm::pow(p, q) as f64 - want) / want).abs() < 3e-6,
                "pow({p}, {q})"
            );
        }
    }

    #[test]
    fn twin_transform_is_not_identity() {
        let mut rng = Rng::stream(3, 4, 5);
        for _ in 0..100 {
            let t = Affine::random_twin(1.0, &mut rng);
            let moved = t.apply(10.0, 3.0);
            assert!((moved.0 - 10.0).abs() + (moved.1 - 3.0).abs() > 0.05);
        }
    }
}

/// Synthetic embeddings without images, for the neighbour/map/structure tests and the
/// 1M-item scale bench: `n` unit vectors of dimension `d`, item i around centre i % `centres`
/// (centres standard normal, spread 0.3), each row from its own seeded stream.
pub fn clustered_embeddings(n: usize, d: usize, centres: usize, seed: u64) -> Vec<f32> {
    use rayon::prelude::*;
    let mut r = crate::rng::SplitMix::new(seed, 0, 0);
    let c: Vec<f32> = (0..centres * d).map(|_| r.normal()).collect();
    let mut v = vec![0f32; n * d];
    v.par_chunks_mut(d.max(1)).enumerate().for_each(|(i, row)| {
        let k = i % centres;
        let mut r = crate::rng::SplitMix::new(seed, 1, i as u64);
        for (t, x) in row.iter_mut().enumerate() {
            *x = c[k * d + t] + 0.3 * r.normal();
        }
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
    });
    v
}
