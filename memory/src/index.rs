//! The in-memory copy of every stored embedding, scanned exactly for semantic search.
//!
//! Why an exact scan and no approximate index: 100,000 vectors of 384 f32 are 154 MB, which a
//! vectorised scan reads in a few milliseconds on this kind of machine (MEASURED.md), inside the
//! latency goal and with perfect recall. The scan is memory-bound, so what matters is touching
//! each vector once: dot products use AVX2/FMA when the CPU has them (checked at run time) and
//! several independent accumulators otherwise (a plain loop does not vectorise, because float
//! addition is not reassociated), and large scans are split across threads.
//!
//! Rows are kept in the order they were added; removal swaps the last row into the hole. The
//! store applies every committed change here while it still holds the write lock, so the index
//! follows the table in commit order.

use std::collections::HashMap;

use crate::types::{EMBEDDING_DIM, EntityId, ObservationId, Vector};

/// Rows per thread below which a scan stays on the calling thread: spawning costs ~30 µs,
/// which a 20,000-row chunk (~1 ms) easily repays.
const ROWS_PER_THREAD: usize = 20_000;

/// Which rows a scan may return.
#[derive(Debug, Clone, Default)]
pub struct RowFilter {
    /// Allowed scope keys (see [`VectorIndex::scope_key`]); `None` allows all.
    pub scopes: Option<Vec<u32>>,
    /// Allowed type keys; `None` allows all.
    pub types: Option<Vec<u32>>,
    /// Earliest observation time, milliseconds, inclusive.
    pub since: Option<i64>,
    /// Latest observation time, milliseconds, inclusive.
    pub until: Option<i64>,
}

impl RowFilter {
    fn is_unfiltered(&self) -> bool {
        self.scopes.is_none()
            && self.types.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }
}

/// One row's metadata, as the store hands it over.
#[derive(Debug, Clone)]
pub struct RowMeta {
    /// The observation.
    pub observation: ObservationId,
    /// Its entity.
    pub entity: EntityId,
    /// Interned scope.
    pub scope: u32,
    /// Interned entity type.
    pub entity_type: u32,
    /// Observation time, milliseconds.
    pub time: i64,
}

/// The best observation of one entity found by a scan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanHit {
    /// The entity.
    pub entity: EntityId,
    /// Its most similar observation.
    pub observation: ObservationId,
    /// Cosine similarity of that observation to the query.
    pub similarity: f32,
}

/// All embeddings, row-major, with their metadata in parallel columns.
#[derive(Default)]
pub struct VectorIndex {
    data: Vec<f32>,
    meta: Vec<RowMeta>,
    row_of: HashMap<ObservationId, usize>,
    scope_keys: HashMap<String, u32>,
    type_keys: HashMap<String, u32>,
}

impl VectorIndex {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Interned key of a scope (its `Display` form), created on first use.
    pub fn scope_key(&mut self, scope: &str) -> u32 {
        intern(&mut self.scope_keys, scope)
    }

    /// Interned key of an entity type, created on first use.
    pub fn type_key(&mut self, entity_type: &str) -> u32 {
        intern(&mut self.type_keys, entity_type)
    }

    /// Key of a scope if any row ever used it.
    pub fn existing_scope_key(&self, scope: &str) -> Option<u32> {
        self.scope_keys.get(scope).copied()
    }

    /// Key of a type if any row ever used it.
    pub fn existing_type_key(&self, entity_type: &str) -> Option<u32> {
        self.type_keys.get(entity_type).copied()
    }

    /// Reserve room for `additional` more rows.
    pub fn reserve(&mut self, additional: usize) {
        self.data.reserve(additional * EMBEDDING_DIM);
        self.meta.reserve(additional);
        self.row_of.reserve(additional);
    }

    /// Add a row (or replace the vector of an observation already present).
    pub fn insert(&mut self, meta: RowMeta, vector: &Vector) {
        if let Some(&row) = self.row_of.get(&meta.observation) {
            self.data[row * EMBEDDING_DIM..(row + 1) * EMBEDDING_DIM].copy_from_slice(vector);
            self.meta[row] = meta;
            return;
        }
        self.row_of.insert(meta.observation, self.meta.len());
        self.meta.push(meta);
        self.data.extend_from_slice(vector);
    }

    /// Remove an observation's row; false when it was not there.
    pub fn remove(&mut self, observation: ObservationId) -> bool {
        let Some(row) = self.row_of.remove(&observation) else {
            return false;
        };
        let last = self.meta.len() - 1;
        if row != last {
            let (head, tail) = self.data.split_at_mut(last * EMBEDDING_DIM);
            head[row * EMBEDDING_DIM..(row + 1) * EMBEDDING_DIM].copy_from_slice(tail);
            self.meta.swap(row, last);
            self.row_of.insert(self.meta[row].observation, row);
        }
        self.meta.pop();
        self.data.truncate(last * EMBEDDING_DIM);
        true
    }

    /// Remove every row of an entity.
    pub fn remove_entity(&mut self, entity: EntityId) {
        let doomed: Vec<ObservationId> = self
            .meta
            .iter()
            .filter(|m| m.entity == entity)
            .map(|m| m.observation)
            .collect();
        for o in doomed {
            self.remove(o);
        }
    }

    /// Change the type key of every row of an entity.
    pub fn retype_entity(&mut self, entity: EntityId, entity_type: u32) {
        for m in self.meta.iter_mut().filter(|m| m.entity == entity) {
            m.entity_type = entity_type;
        }
    }

    /// The `limit` entities whose best observation is most similar to `query` (at least
    /// `min_similarity`), best first; each entity appears once, with its best observation.
    pub fn search(
        &self,
        query: &Vector,
        filter: &RowFilter,
        limit: usize,
        min_similarity: f32,
    ) -> Vec<ScanHit> {
        if limit == 0 || self.meta.is_empty() {
            return Vec::new();
        }
        let rows = self.meta.len();
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(rows.div_ceil(ROWS_PER_THREAD))
            .max(1);
        let mut best = if threads == 1 {
            self.scan(query, filter, 0..rows, limit, min_similarity)
        } else {
            let chunk = rows.div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let range = (t * chunk).min(rows)..((t + 1) * chunk).min(rows);
                        s.spawn(move || self.scan(query, filter, range, limit, min_similarity))
                    })
                    .collect();
                let mut merged = TopK::new(limit, min_similarity);
                for h in handles {
                    // A scan thread only does arithmetic; if it panicked, that is a bug here,
                    // and re-raising it is the honest outcome.
                    let part = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                    for hit in part.items {
                        merged.offer(hit);
                    }
                }
                merged
            })
        };
        best.items.sort_by(|a, b| {
            b.similarity
                .total_cmp(&a.similarity)
                .then(a.entity.cmp(&b.entity))
        });
        best.items
    }

    fn scan(
        &self,
        query: &Vector,
        filter: &RowFilter,
        range: std::ops::Range<usize>,
        limit: usize,
        min_similarity: f32,
    ) -> TopK {
        let mut top = TopK::new(limit, min_similarity);
        let dot = dot_fn();
        let unfiltered = filter.is_unfiltered();
        for row in range {
            let m = &self.meta[row];
            if !unfiltered && !admits(filter, m) {
                continue;
            }
            let v = &self.data[row * EMBEDDING_DIM..(row + 1) * EMBEDDING_DIM];
            let s = dot(query, v);
            if s >= top.threshold {
                top.offer(ScanHit {
                    entity: m.entity,
                    observation: m.observation,
                    similarity: s,
                });
            }
        }
        top
    }
}

fn admits(f: &RowFilter, m: &RowMeta) -> bool {
    f.scopes.as_ref().is_none_or(|s| s.contains(&m.scope))
        && f.types.as_ref().is_none_or(|t| t.contains(&m.entity_type))
        && f.since.is_none_or(|t| m.time >= t)
        && f.until.is_none_or(|t| m.time <= t)
}

fn intern(map: &mut HashMap<String, u32>, key: &str) -> u32 {
    if let Some(&k) = map.get(key) {
        return k;
    }
    let k = u32::try_from(map.len()).unwrap_or(u32::MAX);
    map.insert(key.to_owned(), k);
    k
}

/// The best hit per entity, at most `k` entities. Insertion is O(k), but after the first few
/// thousand rows almost nothing clears the threshold, so the scan is dominated by the dot products.
struct TopK {
    k: usize,
    floor: f32,
    threshold: f32,
    items: Vec<ScanHit>,
}

impl TopK {
    fn new(k: usize, floor: f32) -> Self {
        Self {
            k,
            floor,
            threshold: floor,
            items: Vec::with_capacity(k),
        }
    }

    fn offer(&mut self, hit: ScanHit) {
        if hit.similarity < self.threshold {
            return;
        }
        if let Some(same) = self.items.iter_mut().find(|h| h.entity == hit.entity) {
            if hit.similarity > same.similarity {
                *same = hit;
            }
        } else if self.items.len() < self.k {
            self.items.push(hit);
        } else if let Some(worst) = self
            .items
            .iter_mut()
            .min_by(|a, b| a.similarity.total_cmp(&b.similarity))
        {
            *worst = hit;
        }
        if self.items.len() == self.k {
            self.threshold = self
                .items
                .iter()
                .map(|h| h.similarity)
                .fold(f32::INFINITY, f32::min)
                .max(self.floor);
        }
    }
}

/// The dot product for this CPU, chosen once.
fn dot_fn() -> fn(&[f32], &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return dot_avx2_entry;
        }
    }
    dot_portable
}

/// Dot product with eight independent accumulators, which the compiler turns into SIMD lanes.
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
fn dot_avx2_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only returned by `dot_fn` after checking that the CPU has AVX2 and FMA.
    unsafe { dot_avx2(a, b) }
}

/// Dot product with four 8-lane FMA accumulators (32 floats per step).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    let mut acc = [_mm256_setzero_ps(); 4];
    while i + 32 <= n {
        for (j, accj) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8j + 8 <= i + 32 <= n, inside both slices; unaligned loads.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(pa.add(i + 8 * j)),
                    _mm256_loadu_ps(pb.add(i + 8 * j)),
                )
            };
            *accj = _mm256_fmadd_ps(x, y, *accj);
        }
        i += 32;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds exactly 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    let mut total = lanes.iter().sum::<f32>();
    while i < n {
        total += a[i] * b[i];
        i += 1;
    }
    total
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn unit(seed: u64) -> Vector {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut v = [0.0f32; EMBEDDING_DIM];
        for x in &mut v {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *x = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    fn meta(obs: i64, entity: i64) -> RowMeta {
        RowMeta {
            observation: obs,
            entity,
            scope: 0,
            entity_type: 0,
            time: obs,
        }
    }

    #[test]
    fn vector_kernels_agree_with_a_plain_loop() {
        let (a, b) = (unit(1), unit(2));
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot_portable(&a, &b) - plain).abs() < 1e-5);
        assert!((dot_fn()(&a, &b) - plain).abs() < 1e-5);
        // Lengths that are not a multiple of the step exercise the tails.
        assert!((dot_fn()(&a[..37], &b[..37]) - dot_portable(&a[..37], &b[..37])).abs() < 1e-5);
    }

    #[test]
    fn threaded_search_equals_a_brute_force_ranking() {
        let mut index = VectorIndex::default();
        let n = 3 * ROWS_PER_THREAD + 17;
        for i in 0..n as i64 {
            // Two observations per entity, so per-entity deduplication matters.
            index.insert(meta(i, i / 2), &unit(i as u64));
        }
        let q = unit(999_999);
        let hits = index.search(&q, &RowFilter::default(), 10, -1.0);
        let mut brute: Vec<(f32, i64)> = (0..n as i64)
            .map(|i| (dot_portable(&q, &unit(i as u64)), i / 2))
            .collect();
        brute.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut expected = Vec::new();
        for (_, e) in brute {
            if !expected.contains(&e) {
                expected.push(e);
            }
            if expected.len() == 10 {
                break;
            }
        }
        assert_eq!(hits.iter().map(|h| h.entity).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn removal_keeps_the_other_rows_findable() {
        let mut index = VectorIndex::default();
        for i in 0..5 {
            index.insert(meta(i, i), &unit(i as u64));
        }
        assert!(index.remove(1));
        assert!(!index.remove(1));
        for i in [0, 2, 3, 4] {
            let hits = index.search(&unit(i as u64), &RowFilter::default(), 1, 0.0);
            assert_eq!(hits[0].entity, i as i64, "row {i} moved but is still found");
            assert!((hits[0].similarity - 1.0).abs() < 1e-5);
        }
        let hits = index.search(&unit(1), &RowFilter::default(), 5, 0.99);
        assert!(hits.is_empty(), "min_similarity cuts the rest: {hits:?}");
    }

    #[test]
    fn filters_restrict_scope_type_and_time() {
        let mut index = VectorIndex::default();
        let v = unit(7);
        for i in 0..4 {
            index.insert(
                RowMeta {
                    observation: i,
                    entity: i,
                    scope: (i % 2) as u32,
                    entity_type: (i / 2) as u32,
                    time: i * 10,
                },
                &v,
            );
        }
        let ids = |f: RowFilter| {
            let mut e: Vec<i64> = index
                .search(&v, &f, 10, 0.0)
                .iter()
                .map(|h| h.entity)
                .collect();
            e.sort();
            e
        };
        let scope1 = RowFilter {
            scopes: Some(vec![1]),
            ..Default::default()
        };
        let type0 = RowFilter {
            types: Some(vec![0]),
            ..Default::default()
        };
        let window = RowFilter {
            since: Some(10),
            until: Some(20),
            ..Default::default()
        };
        assert_eq!(ids(scope1), vec![1, 3]);
        assert_eq!(ids(type0), vec![0, 1]);
        assert_eq!(ids(window), vec![1, 2]);
    }
}
