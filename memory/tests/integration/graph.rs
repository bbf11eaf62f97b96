//! Neighbours and shortest paths over relations.

use caxton_memory::{Direction, GraphQuery, MemoryError, Relation, Scope};

use crate::common::{entity, memory, ws};

/// alice -works_at-> acme -located_in-> lisbon -in-> portugal, alice -knows-> bob,
/// bob -works_at-> acme, and a stranger in another scope.
fn graph() -> (tempfile::TempDir, caxton_memory::Memory, Scope) {
    let (dir, m) = memory();
    let s = ws("w");
    for (n, t) in [
        ("alice", "person"),
        ("bob", "person"),
        ("acme", "company"),
        ("lisbon", "city"),
        ("portugal", "country"),
    ] {
        m.upsert_entity(&s, &entity(n, t, &[])).unwrap();
    }
    for (f, t, r) in [
        ("alice", "acme", "works_at"),
        ("acme", "lisbon", "located_in"),
        ("lisbon", "portugal", "in"),
        ("alice", "bob", "knows"),
        ("bob", "acme", "works_at"),
    ] {
        m.relate(
            &s,
            &Relation {
                from: f.into(),
                to: t.into(),
                relation_type: r.into(),
                strength: 0.5,
            },
        )
        .unwrap();
    }
    m.upsert_entity(&ws("elsewhere"), &entity("portugal", "country", &[]))
        .unwrap();
    (dir, m, s)
}

fn names(n: &[caxton_memory::Neighbour]) -> Vec<(&str, u32)> {
    n.iter().map(|x| (x.name.as_str(), x.depth)).collect()
}

#[test]
fn neighbours_to_a_depth_nearest_first() {
    let (_dir, m, s) = graph();
    let one = m.neighbours(&s, "alice", &GraphQuery::new(1)).unwrap();
    assert_eq!(names(&one), [("acme", 1), ("bob", 1)]);
    let three = m.neighbours(&s, "alice", &GraphQuery::new(3)).unwrap();
    assert_eq!(
        names(&three),
        [("acme", 1), ("bob", 1), ("lisbon", 2), ("portugal", 3)]
    );
    let lisbon = three.iter().find(|n| n.name == "lisbon").unwrap();
    assert_eq!(
        (
            lisbon.via.from.as_str(),
            lisbon.via.to.as_str(),
            lisbon.via.relation_type.as_str()
        ),
        ("acme", "lisbon", "located_in")
    );
    assert_eq!(lisbon.via.strength, 0.5);
}

#[test]
fn neighbours_follow_only_the_types_and_direction_asked() {
    let (_dir, m, s) = graph();
    let works = GraphQuery {
        relation_types: vec!["works_at".into()],
        ..GraphQuery::new(2)
    };
    // acme <- alice and acme <- bob, both through works_at, followed backwards.
    assert_eq!(
        names(&m.neighbours(&s, "acme", &works).unwrap()),
        [("alice", 1), ("bob", 1)]
    );
    let out = GraphQuery {
        direction: Direction::Outgoing,
        ..GraphQuery::new(5)
    };
    assert_eq!(
        names(&m.neighbours(&s, "lisbon", &out).unwrap()),
        [("portugal", 1)]
    );
    let incoming = GraphQuery {
        direction: Direction::Incoming,
        ..GraphQuery::new(1)
    };
    assert_eq!(
        names(&m.neighbours(&s, "lisbon", &incoming).unwrap()),
        [("acme", 1)]
    );
}

#[test]
fn shortest_path_between_two_entities() {
    let (_dir, m, s) = graph();
    let path = m
        .shortest_path(&s, "bob", "portugal", &GraphQuery::new(6))
        .unwrap()
        .unwrap();
    let hops: Vec<(&str, &str)> = path
        .iter()
        .map(|p| (p.from.as_str(), p.to.as_str()))
        .collect();
    assert_eq!(
        hops,
        [("bob", "acme"), ("acme", "lisbon"), ("lisbon", "portugal")]
    );

    // Backwards along relations when the direction allows it.
    let back = m
        .shortest_path(&s, "portugal", "alice", &GraphQuery::new(6))
        .unwrap()
        .unwrap();
    assert_eq!(back.len(), 3);
    assert_eq!(
        back[2].relation.from, "alice",
        "the relation is reported as stored"
    );
    let forward_only = GraphQuery {
        direction: Direction::Outgoing,
        ..GraphQuery::new(6)
    };
    assert!(
        m.shortest_path(&s, "portugal", "alice", &forward_only)
            .unwrap()
            .is_none()
    );
    assert!(
        m.shortest_path(&s, "bob", "portugal", &GraphQuery::new(2))
            .unwrap()
            .is_none()
    );
    assert_eq!(
        m.shortest_path(&s, "bob", "bob", &GraphQuery::new(1))
            .unwrap(),
        Some(vec![])
    );
}

#[test]
fn walks_stay_in_their_scope_and_name_missing_entities() {
    let (_dir, m, _s) = graph();
    let err = m
        .neighbours(&ws("elsewhere"), "alice", &GraphQuery::new(1))
        .unwrap_err();
    assert!(
        matches!(err, MemoryError::EntityNotFound { ref name, .. } if name == "alice"),
        "{err}"
    );
    assert!(
        m.neighbours(&ws("elsewhere"), "portugal", &GraphQuery::new(3))
            .unwrap()
            .is_empty()
    );
    assert!(
        m.neighbours(&ws("w"), "alice", &GraphQuery::new(0))
            .is_err()
    );
}
