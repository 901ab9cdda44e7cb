//! The decode layout's bytes, which [`crate::packed`] explains: the row packers that write
//! it and the geometry the AVX-512 one-row kernels read it by; and the number of x rows below
//! which a product runs those kernels, the decode layout's use.

use crate::kquants::{scale_min_words_k4, Q4_K_BYTES, QK_K};
use crate::legacy::{Q5_0_BYTES, Q8_0_BYTES};
use crate::GgmlType;

/// Below this many x rows the AVX-512 path runs the one-row (decode) kernels, which unpack
/// each weight row once for up to four x rows (and `DecodePacked`); from it on, panels of
/// unpacked weights. Best of N on a 2-core Xeon (`headbench --rows`), ms, one-row kernels
/// against panels: the 262k-row Q8_0 head 11.2 / 17.2 at 4 rows, 14.2 / 18.7 at 6, 17.7 /
/// 19.1 at 8, 24.0 / 21.3 at 12; Q5_0 131072×640 4.1 / 6.1 at 4, 7.7 / 7.4 at 8; Q4_K
/// 65536×1024 3.2 / 4.5 at 4, 6.0 / 5.4 at 8. So 8 would serve a single pass better, but a
/// prompt of 4 to 7 tokens would then get other bits alone than inside a served batch (which
/// runs panels), and drafts only gained 5% (a receipt 2.28 → 2.16 s): 4 stays, measured on
/// both CPU kinds.
pub(crate) const ONE_ROW_BELOW: usize = 4;

/// Elements per group whose nibbles share one 64-byte run.
pub(crate) const GROUP: usize = 128;

/// Bytes per packed row of `cols` elements of `ty` (a type `pack` takes).
pub(crate) fn packed_row_bytes(ty: GgmlType, cols: usize) -> usize {
    match ty {
        GgmlType::Q4K => cols / QK_K * Q4K_PACKED_BYTES,
        _ => cols / ty.block_size() * ty.type_size(),
    }
}

/// A Q4_K super-block in the decode layout: 4 bytes of f16 scales, 16 of sub-block scales and
/// mins, 128 of nibbles.
pub(crate) const Q4K_PACKED_BYTES: usize = Q4_K_BYTES + 4;

/// One Q5_0 row (`src`, whole blocks, a multiple of four of them) into the decode layout:
/// scales, then fifth-bit words, then per four blocks 64 bytes with element i of the group
/// in the low and element 64 + i in the high nibble of byte i.
pub(crate) fn pack_q5_0_row(src: &[u8], dst: &mut [u8]) {
    let nb = src.len() / Q5_0_BYTES;
    let (scales, rest) = dst.split_at_mut(2 * nb);
    let (bits, nibbles) = rest.split_at_mut(4 * nb);
    let mut quant = [0u8; GROUP];
    for (g, out) in nibbles.chunks_exact_mut(GROUP / 2).enumerate() {
        for j in 0..4 {
            let b = 4 * g + j;
            let blk = &src[b * Q5_0_BYTES..(b + 1) * Q5_0_BYTES];
            scales[2 * b..2 * b + 2].copy_from_slice(&blk[0..2]);
            bits[4 * b..4 * b + 4].copy_from_slice(&blk[2..6]);
            // GGUF order: element e < 16 is the low nibble of byte e, e ≥ 16 the high one of e - 16.
            for e in 0..32 {
                let byte = blk[6 + e % 16];
                quant[32 * j + e] = if e < 16 { byte & 0x0f } else { byte >> 4 };
            }
        }
        for (i, o) in out.iter_mut().enumerate() {
            *o = quant[i] | (quant[64 + i] << 4);
        }
    }
}

/// One Q8_0 row (`src`, whole blocks) into the decode layout: the `nb` f16 scales, then the
/// `nb · 32` quants as unsigned bytes (q + 128, the kernel's offset form).
pub(crate) fn pack_q8_0_row(src: &[u8], dst: &mut [u8]) {
    let nb = src.len() / Q8_0_BYTES;
    let (scales, quants) = dst.split_at_mut(2 * nb);
    for (b, blk) in src.chunks_exact(Q8_0_BYTES).enumerate() {
        scales[2 * b..2 * b + 2].copy_from_slice(&blk[0..2]);
        for (o, &q) in quants[32 * b..32 * (b + 1)].iter_mut().zip(&blk[2..]) {
            *o = q ^ 0x80;
        }
    }
}

/// One Q4_K row (`src`, whole super-blocks) into the decode layout: per super-block the two
/// f16 scales as they are; the eight 6-bit scales then the eight 6-bit mins, a byte each (the
/// bytes the one-row kernel unpacks from the file's twelve); then per half `h` 64 bytes whose
/// byte `i` holds element `128h + i` in its low and `128h + 64 + i` in its high nibble.
pub(crate) fn pack_q4k_row(src: &[u8], dst: &mut [u8]) {
    for (blk, out) in src
        .chunks_exact(Q4_K_BYTES)
        .zip(dst.chunks_exact_mut(Q4K_PACKED_BYTES))
    {
        out[0..4].copy_from_slice(&blk[0..4]);
        let words = scale_min_words_k4(blk[4..16].try_into().expect("12 bytes"));
        for (o, w) in out[4..20].chunks_exact_mut(4).zip(words) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        // File order: 64-element chunk j is 32 bytes, element 64j + t in the low nibble of
        // byte t (t < 32) or the high nibble of byte t - 32.
        let nibble = |e: usize| {
            let (j, t) = (e / 64, e % 64);
            let byte = blk[16 + 32 * j + t % 32];
            if t < 32 {
                byte & 0x0f
            } else {
                byte >> 4
            }
        };
        for h in 0..2 {
            for i in 0..64 {
                out[20 + 64 * h + i] = nibble(128 * h + i) | (nibble(128 * h + 64 + i) << 4);
            }
        }
    }
}
