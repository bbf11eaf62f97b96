//! Entities, observations and relations as a user of the API sees them; bad input; many
//! threads at once; a full disk.

use std::sync::Arc;

use caxton_memory::{MemoryError, MemoryOptions, Relation, Scope};

use crate::common::{entity, memory, open, ws};

fn rel(from: &str, to: &str, t: &str) -> Relation {
    Relation {
        from: from.into(),
        to: to.into(),
        relation_type: t.into(),
        strength: 1.0,
    }
}

#[test]
fn upsert_creates_then_merges_without_duplicating_observations() {
    let (_dir, m) = memory();
    let scope = ws("acme");
    let first = m
        .upsert_entity(
            &scope,
            &entity("Alice", "person", &["likes green tea", "likes green tea"]),
        )
        .unwrap();
    assert!(first.created);
    assert_eq!(
        first.added_observations.len(),
        1,
        "a repeated text is stored once"
    );

    let mut again = entity("Alice", "engineer", &["likes green tea", "works remotely"]);
    again.metadata = Some(
        serde_json::json!({"team": "core"})
            .as_object()
            .unwrap()
            .clone(),
    );
    let second = m.upsert_entity(&scope, &again).unwrap();
    assert!(!second.created);
    assert_eq!(second.id, first.id);
    assert_eq!(second.added_observations.len(), 1);

    let alice = m.entity(&scope, "Alice").unwrap().unwrap();
    assert_eq!(alice.entity_type, "engineer");
    assert_eq!(alice.metadata["team"], "core");
    let texts: Vec<&str> = alice.observations.iter().map(|o| o.text.as_str()).collect();
    assert_eq!(texts, ["likes green tea", "works remotely"]);
    assert!(alice.updated_at >= alice.created_at);
}

#[test]
fn the_same_name_in_two_scopes_is_two_entities() {
    let (_dir, m) = memory();
    let a = m
        .upsert_entity(
            &Scope::agent("writer").unwrap(),
            &entity("notes", "topic", &["private"]),
        )
        .unwrap();
    let b = m
        .upsert_entity(&Scope::Global, &entity("notes", "topic", &["shared"]))
        .unwrap();
    assert_ne!(a.id, b.id);
    assert!(
        m.entity(&Scope::agent("reader").unwrap(), "notes")
            .unwrap()
            .is_none()
    );
    let g = m.entity(&Scope::Global, "notes").unwrap().unwrap();
    assert_eq!(g.observations[0].text, "shared");
}

#[test]
fn relations_are_unique_per_triple_and_need_both_ends_in_the_scope() {
    let (_dir, m) = memory();
    let s = ws("acme");
    m.upsert_entity(&s, &entity("Alice", "person", &[]))
        .unwrap();
    m.upsert_entity(&s, &entity("Acme", "company", &[]))
        .unwrap();
    m.upsert_entity(&ws("other"), &entity("Bob", "person", &[]))
        .unwrap();

    m.relate(&s, &rel("Alice", "Acme", "works_at")).unwrap();
    let mut stronger = rel("Alice", "Acme", "works_at");
    stronger.strength = 0.25;
    m.relate(&s, &stronger).unwrap();
    m.relate(&s, &rel("Alice", "Acme", "founded")).unwrap();
    let rels = m.relations_of(&s, "Acme").unwrap();
    assert_eq!(rels.len(), 2, "{rels:?}");
    assert_eq!(
        rels[0].strength, 0.25,
        "the second relate updated the strength"
    );

    let err = m.relate(&s, &rel("Alice", "Bob", "knows")).unwrap_err();
    assert!(
        matches!(&err, MemoryError::EntityNotFound { name, .. } if name == "Bob"),
        "Bob lives in another scope: {err}"
    );
    let mut bad = rel("Alice", "Acme", "x");
    bad.strength = 1.5;
    assert!(
        m.relate(&s, &bad)
            .unwrap_err()
            .to_string()
            .contains("between 0 and 1")
    );
}

#[test]
fn deleting_an_entity_takes_its_observations_and_relations() {
    let (_dir, m) = memory();
    let s = ws("acme");
    m.upsert_entity(&s, &entity("Alice", "person", &["one", "two"]))
        .unwrap();
    m.upsert_entity(&s, &entity("Acme", "company", &["three"]))
        .unwrap();
    m.relate(&s, &rel("Alice", "Acme", "works_at")).unwrap();
    assert!(m.delete_entity(&s, "Alice").unwrap());
    assert!(!m.delete_entity(&s, "Alice").unwrap());
    let stats = m.stats(&[]).unwrap();
    assert_eq!(
        (stats.entities, stats.observations, stats.relations),
        (1, 1, 0)
    );
    assert_eq!(
        stats.indexed_vectors, 1,
        "the index forgot the deleted vectors"
    );

    assert_eq!(
        m.delete_observations(&s, "Acme", &["three".into()])
            .unwrap(),
        1
    );
    assert_eq!(m.stats(&[]).unwrap().indexed_vectors, 0);
}

#[test]
fn bad_input_is_refused_with_a_message_and_writes_nothing() {
    let (_dir, m) = memory();
    let s = ws("acme");
    let cases = [
        (entity("", "person", &[]), "entity name"),
        (entity("  ", "person", &[]), "entity name"),
        (entity("Alice", "", &[]), "entity type"),
        (entity("Al\u{0}ice", "person", &[]), "control characters"),
        (entity("Alice", "person", &[""]), "observation text"),
    ];
    for (input, expected) in cases {
        let err = m.upsert_entity(&s, &input).unwrap_err().to_string();
        assert!(err.contains(expected), "{input:?}: {err}");
    }
    let huge = "x".repeat(caxton_memory::DEFAULT_MAX_OBSERVATION_BYTES + 1);
    let err = m
        .upsert_entity(&s, &entity("Alice", "person", &["fine", &huge]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("observation text") && err.contains("8193 bytes"),
        "{err}"
    );
    assert_eq!(
        m.stats(&[]).unwrap().entities,
        0,
        "a refused batch stores none of it"
    );

    let err = caxton_memory::text_from_bytes(b"caf\xc3", "observation").unwrap_err();
    assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    assert!(Scope::workspace("").is_err());
}

#[test]
fn data_and_vectors_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    {
        let m = open(&path, MemoryOptions::default());
        m.upsert_entity(&ws("a"), &entity("Alice", "person", &["one", "two"]))
            .unwrap();
        m.upsert_entity(&Scope::Global, &entity("Bob", "person", &["three"]))
            .unwrap();
    }
    let m = open(&path, MemoryOptions::default());
    let stats = m.stats(&[]).unwrap();
    assert_eq!(
        (stats.entities, stats.observations, stats.indexed_vectors),
        (2, 3, 3)
    );
    assert_eq!(m.stats(&[Scope::Global]).unwrap().observations, 1);
    m.integrity_check().unwrap();
}

#[test]
fn many_threads_writing_and_reading_see_no_busy_error() {
    let (_dir, m) = memory();
    let m = Arc::new(m);
    let s = ws("acme");
    let threads: Vec<_> = (0..12)
        .map(|t| {
            let (m, s) = (Arc::clone(&m), s.clone());
            std::thread::spawn(move || -> Result<(), MemoryError> {
                for i in 0..40 {
                    if t % 2 == 0 {
                        let name = format!("e{t}-{i}");
                        m.upsert_entity(&s, &entity(&name, "thing", &[&format!("fact {t} {i}")]))?;
                        if i > 0 {
                            m.relate(&s, &rel(&name, &format!("e{t}-{}", i - 1), "follows"))?;
                        }
                    } else {
                        m.entity(&s, &format!("e{}-{i}", t - 1))?;
                        m.stats(std::slice::from_ref(&s))?;
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let stats = m.stats(&[]).unwrap();
    assert_eq!((stats.entities, stats.relations), (6 * 40, 6 * 39));
}

#[test]
fn two_handles_on_one_file_wait_for_each_other_instead_of_failing() {
    // Two handles stand for two processes: separate connections contend for SQLite's file
    // lock, which only the busy timeout resolves.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let a = Arc::new(open(&path, MemoryOptions::default()));
    let b = Arc::new(open(&path, MemoryOptions::default()));
    let writers: Vec<_> = [a, b]
        .into_iter()
        .enumerate()
        .map(|(n, m)| {
            std::thread::spawn(move || {
                for i in 0..150 {
                    m.upsert_entity(&Scope::Global, &entity(&format!("h{n}-{i}"), "t", &["x y"]))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let m = open(&path, MemoryOptions::default());
    assert_eq!(m.stats(&[]).unwrap().entities, 300);
}

#[test]
fn a_full_database_says_so_keeps_every_earlier_write_and_recovers_with_space() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let tight = MemoryOptions {
        max_database_bytes: Some(256 * 1024),
        ..MemoryOptions::default()
    };
    let m = open(&path, tight.clone());
    let mut stored = 0;
    let err = loop {
        match m.upsert_entity(
            &Scope::Global,
            &entity(&format!("e{stored}"), "t", &["some fact"]),
        ) {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 10_000, "the size limit never bit");
    };
    assert!(matches!(err, MemoryError::DiskFull), "{err:?}");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    m.integrity_check().unwrap();
    assert_eq!(m.stats(&[]).unwrap().entities, stored);
    drop(m);

    let m = open(&path, MemoryOptions::default());
    m.upsert_entity(&Scope::Global, &entity("after", "t", &["space is back"]))
        .unwrap();
    assert_eq!(m.stats(&[]).unwrap().entities, stored + 1);
    m.integrity_check().unwrap();
}
