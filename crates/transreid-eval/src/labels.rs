//! Identity and camera labels of a query or gallery set.

use crate::error::EvalError;

/// Borrowed person/vehicle ids and camera ids, one pair per row of a feature matrix.
///
/// Ids are compared for equality only; any `i64` values work (the reference uses the dataset's
/// raw ids and 0-based camera indices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labels<'a> {
    pids: &'a [i64],
    camids: &'a [i64],
}

impl<'a> Labels<'a> {
    /// Pairs `pids[i]` with `camids[i]`.
    ///
    /// # Errors
    ///
    /// [`EvalError::LabelLengths`] when the slices differ in length.
    pub fn new(pids: &'a [i64], camids: &'a [i64]) -> Result<Self, EvalError> {
        if pids.len() != camids.len() {
            return Err(EvalError::LabelLengths {
                pids: pids.len(),
                camids: camids.len(),
            });
        }
        Ok(Self { pids, camids })
    }

    /// Number of labelled items.
    pub fn len(&self) -> usize {
        self.pids.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    /// Identity ids.
    pub fn pids(&self) -> &'a [i64] {
        self.pids
    }

    /// Camera ids.
    pub fn camids(&self) -> &'a [i64] {
        self.camids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_must_agree() {
        assert_eq!(
            Labels::new(&[1, 2], &[0]),
            Err(EvalError::LabelLengths { pids: 2, camids: 1 })
        );
        let l = Labels::new(&[1, 2], &[0, 3]).unwrap();
        assert_eq!(
            (l.len(), l.pids(), l.camids()),
            (2, &[1i64, 2][..], &[0i64, 3][..])
        );
    }
}
