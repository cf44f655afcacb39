//! Memory a small file can make the decoder take, measured on a child process (this test
//! binary holds only this test, so every child's peak is its own).

mod common;

use common::*;

/// A 20×20 grey PNG whose colour profile (iCCP) inflates to `profile` bytes of zeros.
fn png_with_profile(profile: usize) -> Vec<u8> {
    use std::io::Write;
    let deflate = |raw: &[u8]| {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(raw).unwrap();
        z.finish().unwrap()
    };
    let mut ihdr = 20u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&20u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut iccp = b"bomb\0\0".to_vec();
    iccp.extend_from_slice(&deflate(&vec![0u8; profile]));
    let rows: Vec<u8> = (0..20u32).flat_map(|y| std::iter::once(0u8).chain((0..20u32).map(move |x| (x * y % 256) as u8))).collect();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", ihdr), (b"iCCP", iccp), (b"IDAT", deflate(&rows)), (b"IEND", Vec::new())] {
        png_chunk(&mut png, kind, &data);
    }
    png
}

#[test]
fn a_colour_profile_that_inflates_to_200_mb_is_not_inflated() {
    let tmp = tempfile::tempdir().unwrap();
    let bomb = write(&tmp.path().join("bomb.png"), &png_with_profile(200_000_000));
    assert!(std::fs::metadata(&bomb).unwrap().len() < 300_000);
    // Without a config the built-in defaults apply (no model is needed to inspect).
    let (code, out, err) = run(tmp.path(), &["inspect", bomb.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("size: 20 x 20 pixels"), "{out}");
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: fills the struct; RUSAGE_CHILDREN covers the children waited for.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    let peak_mb = usage.ru_maxrss / 1024;
    assert!(peak_mb < 120, "inspecting a 200 KB PNG peaked at {peak_mb} MB");
}
