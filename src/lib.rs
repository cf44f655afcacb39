//! simsite: turn an archive of astronomical images into a static "similar images" site.
//!
//! The library holds every stage; the `simsite` binary only parses arguments and maps the
//! result to an exit code. [`pipeline`] is where the stages are put in order.

pub mod api;
pub mod cache;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod decode;
pub mod digests;
pub mod encoder;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod headers;
pub mod ids;
pub mod ingest;
pub mod init;
pub mod inspect;
pub mod layout;
pub mod neighbours;
pub mod pipeline;
pub mod preprocess;
pub mod publish;
pub mod query;
pub mod report;
pub mod rng;
pub mod scan;
pub mod serve;
pub mod site;
pub mod structure;
pub mod synth;
pub mod thumbs;
pub mod ui;
pub mod wcs;

/// Bumped whenever a change makes earlier cache entries or outputs wrong. 2: clip limits
/// that meet fall back to the minimum and maximum (sparse images were black). 3: FITS
/// planes that float32 rounds flat or overflows are read in double precision.
pub const FORMAT_VERSION: u32 = 3;
