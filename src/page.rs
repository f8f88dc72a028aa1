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
}
