//! The interface between distance producers and the blocked evaluator.

/// A query-by-gallery distance matrix produced a block of query rows at a time.
///
/// The evaluator asks for consecutive blocks of rows and ranks each block before asking for the
/// next, so an implementation never needs to hold the whole `[num_queries, num_gallery]` matrix.
/// Implemented by [`crate::FeatureDistances`] (distances from features),
/// [`crate::RerankedDistances`] (sparse k-reciprocal re-ranking) and [`DenseDistances`].
pub trait DistanceRows: Sync {
    /// Number of queries (rows).
    fn num_queries(&self) -> usize;

    /// Number of gallery items (columns).
    fn num_gallery(&self) -> usize;

    /// Writes the distances of queries `first .. first + out.len() / num_gallery()` into `out`,
    /// row-major: `out[r * num_gallery() + j] = dist(first + r, j)`.
    ///
    /// # Panics
    ///
    /// Implementations panic when `out.len()` is not a multiple of `num_gallery()` or the rows run
    /// past `num_queries()`.
    fn fill_rows(&self, first: usize, out: &mut [f32]);
}

/// A precomputed row-major `[num_queries, num_gallery]` distance matrix.
#[derive(Debug, Clone, Copy)]
pub struct DenseDistances<'a> {
    data: &'a [f32],
    num_gallery: usize,
}

impl<'a> DenseDistances<'a> {
    /// Views `data` as rows of `num_gallery` distances.
    ///
    /// # Panics
    ///
    /// Panics if `num_gallery == 0` or `data.len()` is not a multiple of it.
    pub fn new(data: &'a [f32], num_gallery: usize) -> Self {
        assert!(
            num_gallery > 0 && data.len().is_multiple_of(num_gallery),
            "DenseDistances: {} values do not form rows of {num_gallery}",
            data.len()
        );
        Self { data, num_gallery }
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.num_gallery..(i + 1) * self.num_gallery]
    }
}

impl DistanceRows for DenseDistances<'_> {
    fn num_queries(&self) -> usize {
        self.data.len() / self.num_gallery
    }

    fn num_gallery(&self) -> usize {
        self.num_gallery
    }

    fn fill_rows(&self, first: usize, out: &mut [f32]) {
        let start = first * self.num_gallery;
        out.copy_from_slice(&self.data[start..start + out.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_rows_are_copied_in_order() {
        let data = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let d = DenseDistances::new(&data, 2);
        assert_eq!((d.num_queries(), d.num_gallery()), (3, 2));
        let mut out = [0.0; 4];
        d.fill_rows(1, &mut out);
        assert_eq!(out, [2.0, 3.0, 4.0, 5.0]);
        assert_eq!(d.row(2), &[4.0, 5.0]);
    }
}
