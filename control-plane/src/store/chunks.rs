//! Batches written by statements of a few fixed texts. A multi-row statement's text depends
//! on its row count, and each connection keeps the statements it prepared by their text
//! (sqlx's statement cache; on Postgres the server's prepared statements too). The gateway's
//! batches are whatever its shipper's linger gathered, so cut at their own sizes most batches
//! were a text not prepared yet — SQLite parsing and compiling an `INSERT` of thousands of
//! parameters, and evicting another statement from the cache (`switchyard-ingest-bench
//! --spread`). More statements per batch are no answer either: each is a round trip to
//! SQLite's thread, which costs more than the parse saves while the sizes still fit the cache.

/// Rows of padding a statement may carry: statement lengths step by this above it.
pub(crate) const PAD_STEP: usize = 8;

/// The row count a statement of `n` rows (at most `max`) is written as: `n` itself up to
/// `PAD_STEP`, then the next multiple of it — `max / PAD_STEP + PAD_STEP - 1` texts per
/// statement (23 at 128 rows), and at most `PAD_STEP - 1` rows of padding.
pub(crate) fn padded_len(n: usize, max: usize) -> usize {
    if n <= PAD_STEP {
        n
    } else {
        n.div_ceil(PAD_STEP) * PAD_STEP
    }
    .min(max.max(n))
}

/// Statements a connection keeps prepared (sqlx's default is 100): every length of every
/// multi-row statement ingestion writes, with room for the rest. At most rows: usage rows,
/// provisional rows, their delete and cache facts 128 (23 lengths each), ledger postings, tags
/// and fee lookups 256 (39 each), fee legs 512 (powers of two: 10) — 219.
pub(crate) const STATEMENT_CACHE_CAPACITY: usize = 256;

/// Runs of at most `max` items in order, each to be written as `padded_len` rows: the
/// padding repeats the run's last item, so it suits only statements that skip a row already
/// written (`ON CONFLICT … DO NOTHING`, or an `IN (…)` list).
pub(crate) fn padded_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = Padded<'_, T>> {
    items.chunks(max.max(1)).map(move |run| Padded {
        len: padded_len(run.len(), max),
        run,
    })
}

/// One statement's worth of items, padded.
pub(crate) struct Padded<'a, T> {
    run: &'a [T],
    len: usize,
}

impl<'a, T> Padded<'a, T> {
    /// The run itself, without the padding.
    pub(crate) fn items(&self) -> &'a [T] {
        self.run
    }

    /// The rows the statement writes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The run's items, then its last one again up to `len`.
    pub(crate) fn rows(&self) -> impl Iterator<Item = &'a T> {
        let run = self.run;
        run.iter()
            .chain(run.last().into_iter().cycle().take(self.len - run.len()))
    }
}

/// Runs of `items` in order, each a power of two long and at most `max` (largest first): for
/// a statement that cannot be padded with repeats. Every run is a statement of its own.
pub(crate) fn prepared_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let max = max.max(1);
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        // The largest power of two not above what is left, nor above `max`.
        let size = 1 << rest.len().min(max).ilog2();
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
    fn prepared_runs_are_powers_of_two_up_to_the_maximum() {
        assert_eq!(sizes(0, 128), Vec::<usize>::new());
        assert_eq!(sizes(1, 128), [1]);
        assert_eq!(sizes(137, 128), [128, 8, 1]);
        assert_eq!(sizes(300, 128), [128, 128, 32, 8, 4]);
        assert_eq!(sizes(255, 128), [128, 64, 32, 16, 8, 4, 2, 1]);
        // A maximum that is not a power of two caps the runs below it.
        assert_eq!(sizes(200, 100), [64, 64, 64, 8]);
    }

    #[test]
    fn padded_runs_repeat_their_last_item_up_to_a_few_lengths() {
        let items: Vec<usize> = (0..300).collect();
        let runs: Vec<(usize, Vec<usize>)> = padded_chunks(&items, 128)
            .map(|p| (p.len(), p.rows().copied().collect()))
            .collect();
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].1, (0..128).collect::<Vec<_>>());
        assert_eq!(runs[1].1, (128..256).collect::<Vec<_>>());
        // 44 left: written as 48 rows, the last one four more times.
        assert_eq!(runs[2].0, 48);
        let mut last: Vec<usize> = (256..300).collect();
        last.extend([299, 299, 299, 299]);
        assert_eq!(runs[2].1, last);
        assert!(padded_chunks::<usize>(&[], 128).next().is_none());
    }

    #[test]
    fn any_batch_is_written_with_few_texts_and_little_padding() {
        let mut lengths = std::collections::BTreeSet::new();
        for n in 1..=128 {
            let len = padded_len(n, 128);
            assert!(len >= n && len - n < PAD_STEP, "{n} rows written as {len}");
            lengths.insert(len);
        }
        let mut expected: Vec<usize> = (1..=8).collect();
        expected.extend((2..=16).map(|k| k * 8));
        assert_eq!(lengths.into_iter().collect::<Vec<_>>(), expected);
        assert_eq!(padded_len(250, 256), 256);
        assert_eq!(padded_len(256, 256), 256);
    }

    #[test]
    fn the_statement_cache_holds_every_length_ingestion_writes() {
        let lengths = |max| {
            (1..=max)
                .map(|n| padded_len(n, max))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        };
        let padded = 4 * lengths(128) + 3 * lengths(256);
        let legs = 512_usize.ilog2() as usize + 1;
        assert_eq!(padded + legs, 219);
        assert!(padded + legs + 30 <= STATEMENT_CACHE_CAPACITY);
    }
}
