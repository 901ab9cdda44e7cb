//! A borrowed quantized weight matrix in GGML layout ([`QMatrix`]): what every product takes.

use crate::GgmlType;

use crate::format::{row_bytes, QuantError};

/// A borrowed quantized weight matrix in GGML layout: `rows` (= ne1, output features)
/// rows of `cols` (= ne0, input features) elements each, rows contiguous.
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> QMatrix<'a> {
    /// Checks that `data` is exactly `rows` rows of `cols` elements of `ty`.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self, QuantError> {
        let m = QMatrix {
            ty,
            rows,
            cols,
            data,
        };
        m.validate()?;
        Ok(m)
    }

    pub(crate) fn validate(&self) -> Result<(), QuantError> {
        let rb = row_bytes(self.ty, self.cols)?;
        let total = rb.checked_mul(self.rows).ok_or_else(|| {
            QuantError::Shape(format!("{}×{} {} overflows", self.rows, self.cols, self.ty))
        })?;
        if total != self.data.len() {
            return Err(QuantError::Shape(format!(
                "{} matrix {}×{} needs {total} bytes, got {}",
                self.ty,
                self.rows,
                self.cols,
                self.data.len()
            )));
        }
        Ok(())
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }

    /// The raw bytes of row `r` (panics if `r >= rows`, like slice indexing).
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }
}
