//! Tables in an order that creates parents before children: one topological sort for the
//! schema description and for `db-copy`.

/// `items` ordered so that each comes after the items among them that it references by
/// name (`parents`). A reference to itself, or to a name not among `items`, does not
/// count; a cycle keeps the rest in the order given.
pub fn parents_first<T>(
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
    parents: impl Fn(&T) -> Vec<String>,
) -> Vec<T> {
    let mut left = items;
    let mut ordered: Vec<T> = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let ready = left.iter().position(|item| {
            parents(item).iter().all(|parent| {
                parent == name(item)
                    || ordered.iter().any(|o| name(o) == parent)
                    || !left.iter().any(|l| name(l) == parent)
            })
        });
        ordered.push(left.remove(ready.unwrap_or(0)));
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_and_self_references_do_not_count() {
        let tables = vec![
            ("child", vec!["parent"]),
            ("tree", vec!["tree"]),
            ("parent", vec![]),
        ];
        let ordered = parents_first(
            tables,
            |t| t.0,
            |t| t.1.iter().map(|p| p.to_string()).collect(),
        );
        let names: Vec<&str> = ordered.iter().map(|t| t.0).collect();
        assert_eq!(names, ["tree", "parent", "child"]);
    }
}
