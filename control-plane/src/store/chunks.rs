//! Batches split into statements of a few fixed sizes. A multi-row statement's text depends
//! on its row count, and each connection keeps the statements it prepared by their text
//! (sqlx's statement cache; on Postgres the server's prepared statements too): the gateway's
//! batches are whatever its shipper's linger gathered, so cut at arbitrary sizes nearly every
//! batch would be a text not prepared yet — SQLite parsing and compiling an `INSERT` of
//! thousands of parameters, and evicting another statement from the cache.
//! Powers of two keep it to one text per size class, at most `log2(max) + 1` per table.

/// Runs of `items` in order, each a power of two long and at most `max` (largest first).
pub(crate) fn prepared_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let max = max.max(1);
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = rest.len().min(max);
        // The largest power of two not above `size`.
        let size = 1 << size.ilog2();
        let (head, tail) = rest.split_at(size);
        rest = tail;
        Some(head)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(n: usize, max: usize) -> Vec<usize> {
        let items: Vec<usize> = (0..n).collect();
        let runs: Vec<&[usize]> = prepared_chunks(&items, max).collect();
        let joined: Vec<usize> = runs.concat();
        assert_eq!(joined, items, "every item once, in order");
        runs.iter().map(|r| r.len()).collect()
    }

    #[test]
    fn runs_are_powers_of_two_up_to_the_maximum() {
        assert_eq!(sizes(0, 128), Vec::<usize>::new());
        assert_eq!(sizes(1, 128), [1]);
        assert_eq!(sizes(137, 128), [128, 8, 1]);
        assert_eq!(sizes(300, 128), [128, 128, 32, 8, 4]);
        assert_eq!(sizes(255, 128), [128, 64, 32, 16, 8, 4, 2, 1]);
        // A maximum that is not a power of two caps the runs below it.
        assert_eq!(sizes(200, 100), [64, 64, 64, 8]);
    }

    #[test]
    fn any_batch_uses_few_distinct_sizes() {
        let mut seen = std::collections::BTreeSet::new();
        for n in 1..=1000 {
            seen.extend(sizes(n, 128));
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32, 64, 128]
        );
    }
}
