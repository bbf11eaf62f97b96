//! The real all-MiniLM-L6-v2 (fetched by `scripts/fetch-models.sh`): agreement with the
//! sentence-transformers reference vectors in `tests/fixtures/minilm-reference.json`
//! (written by `scripts/gen-embedding-fixture.py`). The model loads once for the binary.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use caxton_memory::{DEFAULT_FETCH_HINT, Embedder, MINILM_DIR_NAME, MiniLm};

/// The models directory: `CAXTON_MODELS_DIR`, else `models/` at the repository root.
pub fn models_dir() -> PathBuf {
    std::env::var_os("CAXTON_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models")))
}

/// The model, loaded on first use and shared by every test of this binary.
pub fn minilm() -> Arc<MiniLm> {
    static MODEL: OnceLock<Arc<MiniLm>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = models_dir().join(MINILM_DIR_NAME);
            Arc::new(MiniLm::load(&dir, DEFAULT_FETCH_HINT).unwrap_or_else(|e| panic!("{e}")))
        })
        .clone()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn vectors_agree_with_sentence_transformers_batched_and_one_by_one() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/minilm-reference.json")).unwrap();
    let cases: Vec<(String, Vec<f32>)> = fixture["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let v = s["embedding"].as_array().unwrap();
            (
                s["text"].as_str().unwrap().to_owned(),
                v.iter().map(|x| x.as_f64().unwrap() as f32).collect(),
            )
        })
        .collect();
    assert_eq!(cases.len(), 8);
    let model = minilm();
    let texts: Vec<&str> = cases.iter().map(|(t, _)| t.as_str()).collect();
    // One batch pads every text to the longest (256 tokens, the long one is truncated);
    // one at a time pads nothing: both must match the reference.
    let batched = model.embed(&texts).unwrap();
    let mut lowest = 1.0f32;
    for ((text, reference), got) in cases.iter().zip(&batched) {
        let c = cosine(reference, got);
        lowest = lowest.min(c);
        assert!(c >= 0.999, "batched {text:.40?}: cosine {c}");
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
    for (text, reference) in &cases {
        let single = model.embed(&[text.as_str()]).unwrap();
        let c = cosine(reference, &single[0]);
        lowest = lowest.min(c);
        assert!(c >= 0.999, "single {text:.40?}: cosine {c}");
    }
    eprintln!("lowest cosine to the sentence-transformers reference: {lowest:.6}");
}

#[test]
fn search_by_meaning_with_the_real_model() {
    let dir = tempfile::tempdir().unwrap();
    let m = caxton_memory::Memory::open(
        &dir.path().join("m.db"),
        minilm(),
        caxton_memory::MemoryOptions::default(),
    )
    .unwrap();
    let s = caxton_memory::Scope::Global;
    for (name, kind, fact) in [
        ("Alice", "person", "prefers green tea in the morning"),
        (
            "Bob",
            "person",
            "maintains the Rust compiler's borrow checker",
        ),
        ("Lisbon", "city", "capital of Portugal, known for its trams"),
    ] {
        m.upsert_entity(&s, &crate::common::entity(name, kind, &[fact]))
            .unwrap();
    }
    let ask = |q: &str| {
        let r = caxton_memory::SearchRequest {
            mode: caxton_memory::SearchMode::Semantic,
            limit: 1,
            ..caxton_memory::SearchRequest::new(q, vec![s.clone()])
        };
        m.search(&r).unwrap()[0].name.clone()
    };
    // No word of these questions appears in the matching fact.
    assert_eq!(
        ask("which beverage does she like to drink at breakfast?"),
        "Alice"
    );
    assert_eq!(ask("who works on programming language tooling?"), "Bob");
    assert_eq!(ask("a European city with streetcars"), "Lisbon");
}
