//! simsite: turn an archive of astronomical images into a static "similar images" site.
pub mod synth;
