//! Semantic, keyword and hybrid search, their filters, and scope isolation (test embedder:
//! texts that share words are similar).

use std::sync::Arc;

use caxton_memory::{
    EMBEDDING_DIM, EmbedError, Embedder, HashEmbedder, MemoryOptions, Scope, SearchMode,
    SearchRequest, Timestamp, Vector,
};

use crate::common::{entity, memory, open, ws};

fn names(hits: &[caxton_memory::SearchHit]) -> Vec<&str> {
    hits.iter().map(|h| h.name.as_str()).collect()
}

fn request(query: &str, mode: SearchMode, scopes: Vec<Scope>) -> SearchRequest {
    SearchRequest {
        mode,
        ..SearchRequest::new(query, scopes)
    }
}

fn seeded() -> (tempfile::TempDir, caxton_memory::Memory) {
    let (dir, m) = memory();
    let s = ws("acme");
    m.upsert_entity(
        &s,
        &entity(
            "Alice",
            "person",
            &["drinks green tea every morning", "lives in Lisbon"],
        ),
    )
    .unwrap();
    m.upsert_entity(
        &s,
        &entity("Bob", "person", &["compiles rust code all day"]),
    )
    .unwrap();
    m.upsert_entity(
        &s,
        &entity("Teahouse", "place", &["serves green tea and cake"]),
    )
    .unwrap();
    m.upsert_entity(&s, &entity("Zanzibar", "place", &[]))
        .unwrap();
    m.upsert_entity(
        &ws("other"),
        &entity("Carol", "person", &["drinks green tea too"]),
    )
    .unwrap();
    (dir, m)
}

#[test]
fn semantic_search_ranks_by_similarity_within_the_scopes_asked() {
    let (_dir, m) = seeded();
    let hits = m
        .search(&request(
            "green tea every morning",
            SearchMode::Semantic,
            vec![ws("acme")],
        ))
        .unwrap();
    assert_eq!(names(&hits)[..2], ["Alice", "Teahouse"], "{hits:#?}");
    assert!(
        !names(&hits).contains(&"Carol"),
        "another workspace's memory stayed out"
    );
    let best = &hits[0];
    assert_eq!(
        best.observation.as_ref().unwrap().text,
        "drinks green tea every morning"
    );
    assert!(best.similarity.unwrap() > hits[1].similarity.unwrap());

    let both = m
        .search(&request(
            "green tea",
            SearchMode::Semantic,
            vec![ws("acme"), ws("other")],
        ))
        .unwrap();
    assert!(names(&both).contains(&"Carol"));

    let strict = SearchRequest {
        min_similarity: 0.99,
        ..request(
            "green tea every morning",
            SearchMode::Semantic,
            vec![ws("acme")],
        )
    };
    assert!(
        m.search(&strict)
            .unwrap()
            .iter()
            .all(|h| h.similarity.unwrap() >= 0.99)
    );
}

#[test]
fn filters_by_entity_type_and_time() {
    let (_dir, m) = seeded();
    let places = SearchRequest {
        entity_types: vec!["place".into()],
        ..request("green tea", SearchMode::Hybrid, vec![ws("acme")])
    };
    assert_eq!(names(&m.search(&places).unwrap()), ["Teahouse"]);

    let future = Timestamp(Timestamp::now().0 + 60_000);
    for mode in [
        SearchMode::Semantic,
        SearchMode::Keyword,
        SearchMode::Hybrid,
    ] {
        let later = SearchRequest {
            since: Some(future),
            ..request("green tea", mode, vec![ws("acme")])
        };
        assert!(
            m.search(&later).unwrap().is_empty(),
            "{mode:?}: nothing recorded after now"
        );
        let until = SearchRequest {
            until: Some(future),
            ..request("green tea", mode, vec![ws("acme")])
        };
        assert!(!m.search(&until).unwrap().is_empty(), "{mode:?}");
    }
}

#[test]
fn keyword_search_finds_names_and_texts_and_ignores_fts_syntax() {
    let (_dir, m) = seeded();
    let acme = || vec![ws("acme")];
    let hits = m
        .search(&request("zanzibar", SearchMode::Keyword, acme()))
        .unwrap();
    assert_eq!(names(&hits), ["Zanzibar"]);
    assert!(hits[0].observation.is_none(), "matched by name alone");

    let hits = m
        .search(&request("rust", SearchMode::Keyword, acme()))
        .unwrap();
    assert_eq!(names(&hits), ["Bob"]);
    assert_eq!(
        hits[0].observation.as_ref().unwrap().text,
        "compiles rust code all day"
    );

    // Accents are folded by the tokenizer.
    let hits = m
        .search(&request("LISBÖN", SearchMode::Keyword, acme()))
        .unwrap();
    assert_eq!(names(&hits), ["Alice"]);

    for nasty in ["\"unbalanced", "NEAR(a b)", "a OR", "*", "tea AND -", ")"] {
        m.search(&request(nasty, SearchMode::Keyword, acme()))
            .unwrap();
    }
    assert!(
        m.search(&request("xylophone quasar", SearchMode::Keyword, acme()))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn hybrid_search_puts_what_both_lists_found_first() {
    let (_dir, m) = seeded();
    let hits = m
        .search(&request("alice tea", SearchMode::Hybrid, vec![ws("acme")]))
        .unwrap();
    assert_eq!(hits[0].name, "Alice", "{hits:#?}");
    assert!(
        hits[0].similarity.is_some(),
        "the semantic side's similarity is kept"
    );
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn deleted_entities_disappear_from_every_search() {
    let (_dir, m) = seeded();
    m.delete_entity(&ws("acme"), "Alice").unwrap();
    for mode in [
        SearchMode::Semantic,
        SearchMode::Keyword,
        SearchMode::Hybrid,
    ] {
        let hits = m
            .search(&request("alice lisbon tea", mode, vec![ws("acme")]))
            .unwrap();
        assert!(!names(&hits).contains(&"Alice"), "{mode:?}: {hits:?}");
    }
}

#[test]
fn a_search_must_name_its_scopes() {
    let (_dir, m) = seeded();
    let err = m
        .search(&request("tea", SearchMode::Hybrid, vec![]))
        .unwrap_err();
    assert!(err.to_string().contains("at least one scope"), "{err}");
    let err = m
        .search(&SearchRequest {
            limit: 5000,
            ..request("tea", SearchMode::Hybrid, vec![Scope::Global])
        })
        .unwrap_err();
    assert!(err.to_string().contains("maximum"), "{err}");
}

/// The test embedder with every vector negated: a different model as far as vectors go.
struct Negated;

impl Embedder for Negated {
    fn model_id(&self) -> &str {
        "test/negated"
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vector>, EmbedError> {
        Ok(HashEmbedder
            .embed(texts)?
            .into_iter()
            .map(|v| {
                let mut n = [0.0f32; EMBEDDING_DIM];
                for (o, x) in n.iter_mut().zip(v) {
                    *o = -x;
                }
                n
            })
            .collect())
    }
}

#[test]
fn opening_with_another_model_re_embeds_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    {
        let m = open(&path, MemoryOptions::default());
        m.upsert_entity(
            &Scope::Global,
            &entity("Alice", "person", &["drinks green tea"]),
        )
        .unwrap();
    }
    let m =
        caxton_memory::Memory::open(&path, Arc::new(Negated), MemoryOptions::default()).unwrap();
    assert_eq!(m.stats(&[]).unwrap().embedding_model, "test/negated");
    let hits = m
        .search(&request(
            "Alice: drinks green tea",
            SearchMode::Semantic,
            vec![Scope::Global],
        ))
        .unwrap();
    let sim = hits[0].similarity.unwrap();
    assert!(
        (sim - 1.0).abs() < 1e-5,
        "stored vectors now come from the new model: {sim}"
    );
}
