//! The map's tiles, kept from one build to the next while the items' places are.
//!
//! A cold build cuts the layout into k-d tiles (`kd_tiles`). A nightly build that added a few
//! items (the map "placed" them: old items did not move) keeps those tiles and puts each new
//! item into the tile nearest it, after the tile's old members. A tile's thumbnails are two
//! atlases: its main one, of the members it had when that atlas was made, and an atlas of the
//! members added since. So a tile that gained two items keeps its main atlas file as it is
//! (no decoding of 256 thumbnails, no new JPEG, nothing for a CDN to copy) and gets a small
//! second one. A tile whose additions outgrow `MAX_ADDED` gets its main atlas made anew; one
//! that lost a member too; one that outgrows `SPLIT_AT` is cut again, alone.
//!
//! The cache keeps, per tile, its members (as 64-bit digests of their ids) and how many are
//! in its main atlas. A map whose items moved starts afresh.

use std::collections::HashMap;
use std::path::Path;

use super::{kd_tiles, TILE};

/// A tile: its layout box, its members (item indices) in map order, and how many of the
/// first of them its main atlas holds (the rest are in its atlas of additions).
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    pub bbox: [f32; 4],
    pub members: Vec<u32>,
    pub base: usize,
}

/// A tile as the cache keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub keys: Vec<u64>,
    pub base: usize,
}

const MAGIC: &[u8; 16] = b"simsite-tiles-v1";
/// A tile that grows past this many members is cut again (its parts get new atlases).
pub const SPLIT_AT: usize = 2 * TILE;
/// Members added to a tile beyond this many go into its main atlas, made anew.
pub const MAX_ADDED: usize = 64;

/// An item's key in the cache: the first 8 bytes of the BLAKE3 of its id.
pub fn key(id: &str) -> u64 {
    u64::from_le_bytes(blake3::hash(id.as_bytes()).as_bytes()[..8].try_into().unwrap())
}

fn bbox(xy: &[f32], members: &[u32]) -> [f32; 4] {
    let mut b = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
    for &i in members {
        let (x, y) = (xy[2 * i as usize], xy[2 * i as usize + 1]);
        b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
    }
    b
}

/// k-d tiles of `members`, each with all its members in its main atlas.
fn cut(xy: &[f32], members: &mut [u32]) -> Vec<Tile> {
    kd_tiles(xy, members).into_iter().map(|(bbox, start, count)| Tile { bbox, members: members[start..start + count].to_vec(), base: count }).collect()
}

/// The tiles of this build's map: `previous` kept and grown when given (the items that were
/// on the last map are where they were), else cut afresh.
pub fn plan(xy: &[f32], ids: &[&str], previous: Option<Vec<Saved>>) -> Vec<Tile> {
    let n = ids.len();
    let fresh = || cut(xy, &mut (0..n as u32).collect::<Vec<_>>());
    let Some(previous) = previous else { return fresh() };
    let at: HashMap<u64, u32> = ids.iter().enumerate().map(|(i, id)| (key(id), i as u32)).collect();
    if at.len() != n {
        return fresh(); // two ids with one key: not worth a special case
    }
    let mut placed = vec![false; n];
    let mut tiles = Vec::with_capacity(previous.len());
    for t in previous {
        let mut members = Vec::with_capacity(t.keys.len());
        for k in &t.keys {
            if let Some(&i) = at.get(k) {
                if std::mem::replace(&mut placed[i as usize], true) {
                    return fresh(); // an item in two tiles: a damaged cache
                }
                members.push(i);
            }
        }
        if members.is_empty() {
            continue;
        }
        // A tile that lost a member gets its main atlas made anew.
        let base = if members.len() == t.keys.len() { t.base.min(members.len()) } else { members.len() };
        tiles.push(Tile { bbox: bbox(xy, &members), members, base });
    }
    if tiles.is_empty() {
        return fresh();
    }
    // New items join the tile nearest them (distance to its box; a tie goes to the smaller box).
    for i in (0..n).filter(|&i| !placed[i]) {
        let (x, y) = (xy[2 * i], xy[2 * i + 1]);
        let dist = |b: &[f32; 4]| {
            let dx = (b[0] - x).max(x - b[2]).max(0.0);
            let dy = (b[1] - y).max(y - b[3]).max(0.0);
            (dx * dx + dy * dy, (b[2] - b[0]) * (b[3] - b[1]))
        };
        let t = (0..tiles.len()).min_by(|&a, &b| dist(&tiles[a].bbox).partial_cmp(&dist(&tiles[b].bbox)).unwrap_or(std::cmp::Ordering::Equal)).unwrap();
        let tile = &mut tiles[t];
        tile.members.push(i as u32);
        tile.bbox = [tile.bbox[0].min(x), tile.bbox[1].min(y), tile.bbox[2].max(x), tile.bbox[3].max(y)];
    }
    let mut out = Vec::with_capacity(tiles.len());
    for mut t in tiles {
        if t.members.len() > SPLIT_AT {
            out.extend(cut(xy, &mut t.members));
        } else {
            if t.members.len() - t.base > MAX_ADDED {
                t.base = t.members.len();
            }
            out.push(t);
        }
    }
    out
}

/// The cache's form of `tiles`.
pub fn to_bytes(tiles: &[Tile], ids: &[&str]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend((tiles.len() as u32).to_le_bytes());
    for t in tiles {
        out.extend((t.members.len() as u32).to_le_bytes());
        out.extend((t.base as u32).to_le_bytes());
        for &i in &t.members {
            out.extend(key(ids[i as usize]).to_le_bytes());
        }
    }
    out
}

/// The tiles the cache keeps, or `None` when there are none or they do not read back whole.
pub fn load(path: &Path) -> Option<Vec<Saved>> {
    let b = std::fs::read(path).ok()?;
    let rest = b.strip_prefix(MAGIC.as_slice())?;
    let u32_at = |at: usize| -> Option<usize> { Some(u32::from_le_bytes(rest.get(at..at + 4)?.try_into().ok()?) as usize) };
    let count = u32_at(0)?;
    let mut at = 4;
    let mut tiles = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let (len, base) = (u32_at(at)?, u32_at(at + 4)?);
        at += 8;
        let bytes = rest.get(at..at.checked_add(len.checked_mul(8)?)?)?;
        at += bytes.len();
        tiles.push(Saved { keys: bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect(), base });
    }
    (at == rest.len()).then_some(tiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(tiles: &[Tile], ids: &[&str]) -> Vec<Saved> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, to_bytes(tiles, ids)).unwrap();
        load(&p).unwrap()
    }

    /// `n` items on a 40-wide grid; items from 1,000 on fall between the first 1,000.
    fn grid(n: usize) -> (Vec<f32>, Vec<String>) {
        let xy = (0..n)
            .flat_map(|i| if i < 1000 { [(i % 40) as f32 + i as f32 * 1e-3, (i / 40) as f32] } else { [(i % 39) as f32 + 0.5, ((i * 7) % 24) as f32 + 0.5] })
            .collect();
        (xy, (0..n).map(|i| format!("item-{i}")).collect())
    }

    #[test]
    fn added_items_join_the_nearest_tile_after_its_members() {
        let (xy, ids) = grid(1200);
        let (old, new) = (1000, 1200);
        let old_ids: Vec<&str> = ids[..old].iter().map(String::as_str).collect();
        let first = plan(&xy[..2 * old], &old_ids, None);
        assert!(first.len() >= 4 && first.iter().all(|t| t.base == t.members.len() && t.members.len() <= TILE));
        let all: Vec<&str> = ids[..new].iter().map(String::as_str).collect();
        let second = plan(&xy[..2 * new], &all, Some(saved(&first, &old_ids)));
        assert_eq!(second.len(), first.len());
        let mut seen = vec![0; new];
        for (a, b) in first.iter().zip(&second) {
            // The old members first, in their order, all in the main atlas...
            assert_eq!(&b.members[..a.members.len()], &a.members[..]);
            assert_eq!(b.base, a.base);
            // ...then the new ones, each in a tile whose old box held it, where one did.
            for &i in &b.members[b.base..] {
                assert!(i as usize >= old);
                let (x, y) = (xy[2 * i as usize], xy[2 * i as usize + 1]);
                let inside = |t: &Tile| x >= t.bbox[0] && x <= t.bbox[2] && y >= t.bbox[1] && y <= t.bbox[3];
                assert!(inside(a) || !first.iter().any(inside), "item {i} at {x},{y}");
            }
            for &i in &b.members {
                seen[i as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "every item in exactly one tile");
        assert!(second.iter().filter(|t| t.base < t.members.len()).count() >= 3, "additions spread over the tiles");
    }

    #[test]
    fn a_tile_that_loses_a_member_or_outgrows_its_additions_gets_one_atlas_again() {
        let (xy, ids) = grid(1000);
        let all: Vec<&str> = ids.iter().map(String::as_str).collect();
        let first = plan(&xy, &all, None);
        assert!(first.len() > 2);
        // Item 0 goes: the rest keep their places (and indices shift by one).
        let fewer: Vec<&str> = all[1..].to_vec();
        let second = plan(&xy[2..], &fewer, Some(saved(&first, &all)));
        let losing = first.iter().position(|t| t.members.contains(&0)).unwrap();
        assert_eq!(second[losing].base, second[losing].members.len());
        assert_eq!(second[losing].members.len(), first[losing].members.len() - 1);
        // Many new items at one spot: the tile there is cut again, into tiles of at most TILE.
        let mut xy2 = xy.clone();
        let mut more = ids.clone();
        for j in 0..SPLIT_AT {
            xy2.extend([3.0 + j as f32 * 1e-4, 3.0]);
            more.push(format!("new-{j}"));
        }
        let more: Vec<&str> = more.iter().map(String::as_str).collect();
        let third = plan(&xy2, &more, Some(saved(&first, &all)));
        assert!(third.len() > first.len());
        assert!(third.iter().all(|t| t.members.len() <= SPLIT_AT && t.members.len() - t.base <= MAX_ADDED));
        assert_eq!(third.iter().map(|t| t.members.len()).sum::<usize>(), more.len());
    }

    #[test]
    fn a_damaged_cache_reads_as_nothing() {
        let (xy, ids) = grid(300);
        let all: Vec<&str> = ids.iter().map(String::as_str).collect();
        let bytes = to_bytes(&plan(&xy, &all, None), &all);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        for cut in [0, 10, bytes.len() - 1] {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            assert!(load(&p).is_none(), "cut at {cut}");
        }
        std::fs::write(&p, &bytes).unwrap();
        assert!(load(&p).is_some());
    }
}
