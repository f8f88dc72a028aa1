//! One page of a list, with how many items the whole list has.

/// `items` are the page; `count` is the length of the whole list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub count: i64,
    pub items: Vec<T>,
}

impl<T> Page<T> {
    pub fn new(count: i64, items: Vec<T>) -> Page<T> {
        Page { count, items }
    }

    /// The page at `offset` of at most `limit` items of a whole list held in memory.
    pub fn of(all: Vec<T>, limit: i64, offset: i64) -> Page<T> {
        let count = all.len() as i64;
        let items = all
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(0))
            .collect();
        Page { count, items }
    }
}
