//! Buffers that start on a 64-byte boundary, for the tile unit's operands and results.
//!
//! Every tile row the AMX kernel loads or stores is 64 bytes at a multiple of 64 from the
//! buffer's start (or from a row of `c`); with the start on a cache line each row is one line,
//! off it each row straddles two. On a Xeon with AMX (2026-12-07,
//! `amx::probe::tile_row_alignment`), a kernel step (four tile loads, four `tdpbf16ps`) took
//! 20 ns from aligned buffers in L1 and 69–73 ns 16 or 32 bytes off (25 against 78–80 ns in
//! L2); a product whose `c` was 16 bytes off ran ≈ 25% slower (`bf16_speed`). `Vec` only
//! promises the element's alignment, and glibc hands out 16 bytes.

use std::ops::{Deref, DerefMut};

/// `len` values of `T` starting on a 64-byte boundary: a `Vec` with up to 64 bytes of slack
/// in front, a slice through `Deref`.
pub struct LineVec<T> {
    buf: Vec<T>,
    off: usize,
    len: usize,
}

impl<T: Copy> LineVec<T> {
    /// `len` copies of `value`.
    pub fn filled(len: usize, value: T) -> LineVec<T> {
        let mut v = LineVec {
            buf: Vec::new(),
            off: 0,
            len: 0,
        };
        v.refill(len, value);
        v
    }

    /// Makes this `len` copies of `value`, keeping the allocation where it is large enough.
    pub fn refill(&mut self, len: usize, value: T) {
        let slack = 64 / std::mem::size_of::<T>().max(1);
        self.buf.clear();
        self.buf.resize(len + slack, value);
        // `align_offset` may decline (usize::MAX): the values are then merely unaligned.
        self.off = self.buf.as_ptr().align_offset(64).min(slack);
        self.len = len;
    }
}

impl<T> Deref for LineVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf[self.off..self.off + self.len]
    }
}

impl<T> DerefMut for LineVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

impl<T: Copy + Default> Clone for LineVec<T> {
    /// A copy in a new allocation, aligned in its turn (a plain `Vec` clone might not be).
    fn clone(&self) -> LineVec<T> {
        let mut v = LineVec::filled(self.len, T::default());
        v.copy_from_slice(self);
        v
    }
}

impl<T: PartialEq> PartialEq for LineVec<T> {
    fn eq(&self, other: &LineVec<T>) -> bool {
        **self == **other
    }
}

impl<T> std::fmt::Debug for LineVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LineVec {{ len: {} }}", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: Copy + Default + PartialEq + std::fmt::Debug>(value: T, other: T) {
        for len in [0, 1, 31, 32, 33, 1000, 70_001] {
            let mut b = LineVec::filled(len, value);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&v| v == value));
            assert_eq!(b.as_ptr() as usize % 64, 0, "len {len}");
            if let Some(last) = b.last_mut() {
                *last = other;
            }
            let copy = b.clone();
            assert_eq!(copy, b);
            assert_eq!(copy.as_ptr() as usize % 64, 0);
            b.refill(len / 2 + 5, other);
            assert_eq!(b.len(), len / 2 + 5);
            assert!(b.iter().all(|&v| v == other));
            assert_eq!(b.as_ptr() as usize % 64, 0);
        }
    }

    #[test]
    fn starts_on_a_cache_line_and_holds_what_was_written() {
        check(0u16, 7u16);
        check(1.5f32, -2.0f32);
        check(0.25f64, 3.0f64);
    }
}
