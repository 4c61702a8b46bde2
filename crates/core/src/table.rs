//! A 256-entry table indexed by byte value: one load per byte, no branches.

/// A table indexed by byte value.
pub(crate) struct ByteTable([u8; 256]);

impl ByteTable {
    pub(crate) const fn new(table: [u8; 256]) -> Self {
        Self(table)
    }

    #[inline(always)]
    #[allow(
        clippy::indexing_slicing,
        reason = "a u8 always indexes a 256-entry table"
    )]
    pub(crate) const fn get(&self, byte: u8) -> u8 {
        self.0[byte as usize]
    }
}
