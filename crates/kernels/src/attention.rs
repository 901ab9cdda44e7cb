//! Causal attention with an optional sliding window and grouped KV heads (GQA), computed one
//! (query row, KV head) at a time with an online softmax over key tiles, so no `T × S` score
//! matrix ever exists; the backward recomputes scores from the cached log-sum-exp, as
//! FlashAttention does.
//!
//! Query head `h` reads KV head `h / (n_q_heads / n_kv_heads)` (consecutive query heads share a
//! KV head, as in HF's `repeat_kv` and llama.cpp). All query heads of a group are processed
//! together so each key and value row is read once per group.

use crate::float::{axpy, dot, max_lanes, scale_in_place, sum_lanes};
use crate::matmul::gemm_strided;
use crate::simd::multiversion;
use crate::Float;
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// Keys scored per online-softmax step: the score tile (`group × TILE`) stays in L1 and the
/// rescale of the accumulator happens once per tile rather than once per key.
const TILE: usize = 64;
/// Below this many multiply-adds the whole call runs on the calling thread.
const PAR_MIN_FLOPS: usize = 1 << 17;

/// The keys query position `pos` may attend: `[lo, hi)` with `hi = pos + 1` and, with a window
/// `w`, `lo = pos + 1 − w` (so `pos − j < w`).
#[inline]
pub fn key_range(pos: usize, window: Option<usize>) -> (usize, usize) {
    let hi = pos + 1;
    let lo = window.map_or(0, |w| hi.saturating_sub(w));
    (lo, hi)
}

/// The keys query position `pos` may attend among a tile of `nk` keys starting at key `j0`:
/// `[a, b)` relative to `j0`; empty (`a == b`) when it may attend none of them.
#[inline]
pub fn keys_in_tile(pos: usize, window: Option<usize>, j0: usize, nk: usize) -> (usize, usize) {
    let (lo, hi) = key_range(pos, window);
    let a = lo.saturating_sub(j0).min(nk);
    (a, hi.saturating_sub(j0).clamp(a, nk))
}

struct Shape {
    t: usize,
    s: usize,
    n_q: usize,
    n_kv: usize,
    d: usize,
    group: usize,
}

#[allow(clippy::too_many_arguments)]
fn check_shapes<F>(
    q: &[F],
    k_len: usize,
    v_len: usize,
    q_pos: &[usize],
    n_q: usize,
    n_kv: usize,
    d: usize,
    window: Option<usize>,
) -> Shape {
    assert!(n_q > 0 && n_kv > 0 && d > 0, "empty head shape");
    assert!(
        n_q.is_multiple_of(n_kv),
        "n_q_heads must be a multiple of n_kv_heads"
    );
    assert!(
        window != Some(0),
        "a window of 0 would leave a query no key"
    );
    let t = q_pos.len();
    assert_eq!(q.len(), t * n_q * d, "q is not (T, n_q_heads, head_dim)");
    assert!(
        k_len.is_multiple_of(n_kv * d),
        "k is not (S, n_kv_heads, head_dim)"
    );
    assert_eq!(v_len, k_len, "v differs in shape from k");
    let s = k_len / (n_kv * d);
    if let Some(&p) = q_pos.iter().max() {
        assert!(
            p < s,
            "query position {p} has no key (S = {s}): write the KV cache first"
        );
    }
    Shape {
        t,
        s,
        n_q,
        n_kv,
        d,
        group: n_q / n_kv,
    }
}

/// Multiply-adds in one pass over the allowed (query, key) pairs.
fn flops(sh: &Shape, q_pos: &[usize], window: Option<usize>) -> usize {
    q_pos
        .iter()
        .map(|&p| {
            let (lo, hi) = key_range(p, window);
            hi - lo
        })
        .sum::<usize>()
        * sh.n_q
        * sh.d
}

/// `q` is `(T, n_q_heads, D)` for queries at absolute positions `q_pos[t]`; `k, v` are
/// `(S, n_kv_heads, D)` with key `j` at position `j`. Query `t` attends key `j` iff
/// `j <= q_pos[t]` and (no window or `q_pos[t] − j < window`). Writes `out` `(T, n_q_heads, D)`
/// and, if given, `lse` `(T, n_q_heads)`: the log-sum-exp of the scaled scores, which is all the
/// backward needs to recompute the softmax.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward<F: Float>(
    q: &[F],
    k: &[F],
    v: &[F],
    q_pos: &[usize],
    n_q_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    window: Option<usize>,
    scale: F,
    out: &mut [F],
    lse: Option<&mut [F]>,
) {
    let sh = check_shapes(
        q,
        k.len(),
        v.len(),
        q_pos,
        n_q_heads,
        n_kv_heads,
        head_dim,
        window,
    );
    forward_on(q, &Dense(k), &Dense(v), q_pos, &sh, window, scale, out, lse);
}

/// [`attention_forward`] over keys and values stored as f16 (a KV cache at half the memory,
/// as llama.cpp keeps by default): each tile of rows is widened to f32 as it is read, so the
/// result is exactly [`attention_forward`]'s on the widened values.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward_f16kv(
    q: &[f32],
    k: &[f16],
    v: &[f16],
    q_pos: &[usize],
    n_q_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    window: Option<usize>,
    scale: f32,
    out: &mut [f32],
    lse: Option<&mut [f32]>,
) {
    let sh = check_shapes(
        q,
        k.len(),
        v.len(),
        q_pos,
        n_q_heads,
        n_kv_heads,
        head_dim,
        window,
    );
    forward_on(q, &Half(k), &Half(v), q_pos, &sh, window, scale, out, lse);
}

/// Rows `(S, n_kv_heads, D)` of keys or values, read a tile at a time: one forward for every
/// storage type, the f32 rows lent as they are and narrower ones widened into a scratch tile.
trait KvRows<F>: Sync {
    /// Rows `j0..j1` of KV head `g`: a slice whose row `r` (position `j0 + r`) starts at
    /// `r · stride`, and that stride.
    fn tile<'a>(
        &'a self,
        j0: usize,
        j1: usize,
        g: usize,
        n_kv: usize,
        d: usize,
        buf: &'a mut Vec<F>,
    ) -> (&'a [F], usize);
}

struct Dense<'a, F>(&'a [F]);

impl<F: Float> KvRows<F> for Dense<'_, F> {
    fn tile<'a>(
        &'a self,
        j0: usize,
        _j1: usize,
        g: usize,
        n_kv: usize,
        d: usize,
        _buf: &'a mut Vec<F>,
    ) -> (&'a [F], usize) {
        (&self.0[(j0 * n_kv + g) * d..], n_kv * d)
    }
}

struct Half<'a>(&'a [f16]);

impl KvRows<f32> for Half<'_> {
    fn tile<'a>(
        &'a self,
        j0: usize,
        j1: usize,
        g: usize,
        n_kv: usize,
        d: usize,
        buf: &'a mut Vec<f32>,
    ) -> (&'a [f32], usize) {
        buf.resize((j1 - j0) * d, 0.0);
        for (j, dst) in (j0..j1).zip(buf.chunks_exact_mut(d)) {
            widen_f16(&self.0[(j * n_kv + g) * d..][..d], dst);
        }
        (buf, d)
    }
}

/// `dst[i] = src[i]` as f32 (exact). On AVX-512 sixteen values an instruction in one loop:
/// `half`'s slice conversion calls an out-of-line function per eight values, and widening
/// the f16 KV cache that way was 5% of a 16-sequence server's time.
pub(crate) fn widen_f16(src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "widen_f16: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::level() >= 2 {
        // SAFETY: level 2 means AVX-512F on this CPU, the feature `widen_avx512` needs.
        return unsafe { widen_avx512(src, dst) };
    }
    src.convert_to_f32_slice(dst);
}

/// # Safety
/// The CPU must have AVX-512F; `src` and `dst` have the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn widen_avx512(src: &[f16], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = src.len() / 16 * 16;
    for i in (0..n).step_by(16) {
        // SAFETY: i + 16 ≤ n ≤ both lengths; unaligned loads and stores.
        let h = _mm256_loadu_si256(src.as_ptr().add(i) as *const __m256i);
        _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_cvtph_ps(h));
    }
    src[n..].convert_to_f32_slice(&mut dst[n..]);
}

/// The forward of [`attention_forward`] once shapes are checked, over any row storage.
#[allow(clippy::too_many_arguments)]
fn forward_on<F: Float>(
    q: &[F],
    k: &dyn KvRows<F>,
    v: &dyn KvRows<F>,
    q_pos: &[usize],
    sh: &Shape,
    window: Option<usize>,
    scale: F,
    out: &mut [F],
    lse: Option<&mut [F]>,
) {
    assert_eq!(out.len(), q.len(), "out is not (T, n_q_heads, head_dim)");
    let mut scratch;
    let lse = match lse {
        Some(l) => {
            assert_eq!(l.len(), sh.t * sh.n_q, "lse is not (T, n_q_heads)");
            l
        }
        None => {
            scratch = vec![F::ZERO; sh.t * sh.n_q];
            &mut scratch[..]
        }
    };
    let (d, group, n_kv) = (sh.d, sh.group, sh.n_kv);
    let par = flops(sh, q_pos, window) >= PAR_MIN_FLOPS;
    if sh.t >= TILED_MIN_ROWS {
        // Prefill and training: blocks of BQ query rows, scores by gemm (see `attend_block`).
        let row = sh.n_q * d;
        let item = |(b, (o, l)): (usize, (&mut [F], &mut [F]))| {
            let t0 = b * BQ;
            let rows = o.len() / row;
            let qb = &q[t0 * row..][..rows * row];
            attend_block(qb, k, v, &q_pos[t0..t0 + rows], sh, window, scale, o, l);
        };
        if par {
            out.par_chunks_mut(BQ * row)
                .zip(lse.par_chunks_mut(BQ * sh.n_q))
                .enumerate()
                .for_each(item);
        } else {
            out.chunks_mut(BQ * row)
                .zip(lse.chunks_mut(BQ * sh.n_q))
                .enumerate()
                .for_each(item);
        }
        return;
    }
    // Decode and short chunks: one item per (query row t, KV head g), owning `out` chunk
    // `group × D` and `lse` chunk `group`.
    let item = |(i, (o, l)): (usize, (&mut [F], &mut [F]))| {
        let (t, g) = (i / n_kv, i % n_kv);
        let qg = &q[(t * sh.n_q + g * group) * d..][..group * d];
        let (lo, hi) = key_range(q_pos[t], window);
        attend(qg, k, v, g, n_kv, d, group, lo, hi, scale, o, l);
    };
    if par {
        out.par_chunks_mut(group * d)
            .zip(lse.par_chunks_mut(group))
            .enumerate()
            .for_each(item);
    } else {
        out.chunks_mut(group * d)
            .zip(lse.chunks_mut(group))
            .enumerate()
            .for_each(item);
    }
}

multiversion! {
/// `x ← exp(scale·x − lse)` over one row of allowed scores: the softmax probabilities a
/// backward recomputes from the cached log-sum-exp (vectorised `exp_approx`).
pub fn probs_from_lse<F: Float>(x: &mut [F], scale: F, lse: F) {
    for v in x.iter_mut() {
        *v = (scale * *v - lse).exp_approx();
    }
}
}

multiversion! {
/// `x ← softmax(scale·x)` over one row of allowed scores, returning its log-sum-exp
/// `ln Σ exp(scale·x)`: a whole score row at once, where the row fits (training's blocked
/// forward). Vectorised `exp_approx`, as [`probs_from_lse`], which recomputes the same
/// probabilities from the returned value.
pub fn softmax_row<F: Float>(x: &mut [F], scale: F) -> F {
    scale_in_place(scale, x);
    let m = max_lanes(x, F::NEG_INFINITY);
    for v in x.iter_mut() {
        *v = (*v - m).exp_approx();
    }
    let sum = sum_lanes(x);
    scale_in_place(F::ONE / sum, x);
    m + sum.ln()
}
}

multiversion! {
/// `ds ← scale · p ⊙ (ds − δ)` over one row: the score gradient from `ds = dout·vᵀ` on entry.
pub fn score_grads<F: Float>(ds: &mut [F], p: &[F], scale: F, delta: F) {
    for (d, &pp) in ds.iter_mut().zip(p) {
        *d = scale * pp * (*d - delta);
    }
}
}

/// Query rows per block, and keys per block, of the tiled (gemm) forward.
const BQ: usize = 64;
const BK: usize = 64;
/// From this many query rows on the forward runs blocks of query rows through `gemm`; below,
/// row by row, where a gemm call's fixed cost would dominate.
#[cfg(not(test))]
const TILED_MIN_ROWS: usize = 32;
/// Tests use small shapes; a low threshold makes them cover both paths.
#[cfg(test)]
const TILED_MIN_ROWS: usize = 4;

/// FlashAttention-style forward of one block of query rows (`qb`, `o`: `(rows, n_q, D)`; `l`:
/// `(rows, n_q)`), head by head, over key blocks of `BK`: `S = scale·Q·K^T` and `O += P·V` are
/// small gemms, the mask and online softmax run on the `rows × BK` score tile in between.
#[allow(clippy::too_many_arguments)]
fn attend_block<F: Float>(
    qb: &[F],
    k: &dyn KvRows<F>,
    v: &dyn KvRows<F>,
    q_pos: &[usize],
    sh: &Shape,
    window: Option<usize>,
    scale: F,
    o: &mut [F],
    l: &mut [F],
) {
    let (d, n_q, n_kv) = (sh.d, sh.n_q, sh.n_kv);
    let rows = q_pos.len();
    // Keys any row of the block may see.
    let lo = q_pos
        .iter()
        .map(|&p| key_range(p, window).0)
        .min()
        .unwrap_or(0);
    let hi = q_pos.iter().map(|&p| p + 1).max().unwrap_or(0);
    let mut s = vec![F::ZERO; rows * BK];
    let mut acc = vec![F::ZERO; rows * d];
    let mut m = vec![F::NEG_INFINITY; rows];
    let mut sum = vec![F::ZERO; rows];
    let (mut kbuf, mut vbuf) = (Vec::new(), Vec::new());
    for h in 0..n_q {
        let g = h / sh.group;
        acc.fill(F::ZERO);
        m.fill(F::NEG_INFINITY);
        sum.fill(F::ZERO);
        let qh = &qb[h * d..];
        let mut j0 = lo;
        while j0 < hi {
            let j1 = (j0 + BK).min(hi);
            let nk = j1 - j0;
            let (kb, ks) = k.tile(j0, j1, g, n_kv, d, &mut kbuf);
            let (vb, vs) = v.tile(j0, j1, g, n_kv, d, &mut vbuf);
            let st = &mut s[..rows * nk];
            // S (rows, nk) = Q_h (rows, D) · K_g[j0..j1] (nk, D)^T
            gemm_strided(false, rows, nk, d, st, false, qh, (n_q * d, 1), kb, (1, ks));
            online_softmax_tile(
                st, q_pos, j0, nk, window, scale, &mut m, &mut sum, &mut acc, d,
            );
            // acc (rows, D) += P (rows, nk) · V_g[j0..j1] (nk, D)
            gemm_strided(false, rows, d, nk, &mut acc, true, st, (nk, 1), vb, (vs, 1));
            j0 = j1;
        }
        for r in 0..rows {
            let inv = F::ONE / sum[r];
            let dst = &mut o[(r * n_q + h) * d..][..d];
            for (x, &a) in dst.iter_mut().zip(&acc[r * d..][..d]) {
                *x = a * inv;
            }
            l[r * n_q + h] = m[r] + sum[r].ln();
        }
    }
}

multiversion! {
/// Masks, scales and exponentiates one `rows × nk` score tile (keys `j0..j0 + nk`) in place,
/// updating each row's running max `m` and sum, and rescaling its accumulator row when `m`
/// grows. Masked entries become 0.
fn online_softmax_tile<F: Float>(
    st: &mut [F],
    q_pos: &[usize],
    j0: usize,
    nk: usize,
    window: Option<usize>,
    scale: F,
    m: &mut [F],
    sum: &mut [F],
    acc: &mut [F],
    d: usize,
) {
    for (r, sr) in st.chunks_exact_mut(nk).enumerate() {
        let (a, b) = keys_in_tile(q_pos[r], window, j0, nk);
        if a == b {
            sr.fill(F::ZERO);
            continue;
        }
        scale_in_place(scale, &mut sr[a..b]);
        let m_new = max_lanes(&sr[a..b], m[r]);
        // The vectorised exp and lane sums: libm's scalar `expf` and a running sum were the
        // tile's cost (the backward recomputes these probabilities with the same `exp_approx`).
        for x in &mut sr[a..b] {
            *x = (*x - m_new).exp_approx();
        }
        let tile_sum = sum_lanes(&sr[a..b]);
        sr[..a].fill(F::ZERO);
        sr[b..].fill(F::ZERO);
        if m_new != m[r] {
            let corr = (m[r] - m_new).exp();
            sum[r] *= corr;
            scale_in_place(corr, &mut acc[r * d..][..d]);
            m[r] = m_new;
        }
        sum[r] += tile_sum;
    }
}
}

multiversion! {
/// One (query row, KV head) of the forward: `qg` is the group's `group × D` queries, `o` their
/// `group × D` outputs, `l` their `group` log-sum-exps.
fn attend<F: Float>(
    qg: &[F],
    k: &dyn KvRows<F>,
    v: &dyn KvRows<F>,
    g: usize,
    n_kv: usize,
    d: usize,
    group: usize,
    lo: usize,
    hi: usize,
    scale: F,
    o: &mut [F],
    l: &mut [F],
) {
    // Running max `m` and running sum `sum` of exp(score − m) per head; `o` holds the running
    // Σ exp(score − m)·v, rescaled whenever m grows.
    let mut m = vec![F::NEG_INFINITY; group];
    let mut sum = vec![F::ZERO; group];
    let mut s = vec![F::ZERO; group * TILE];
    let (mut kbuf, mut vbuf) = (Vec::new(), Vec::new());
    o.fill(F::ZERO);
    let mut j0 = lo;
    while j0 < hi {
        let j1 = (j0 + TILE).min(hi);
        let nt = j1 - j0;
        // scores = scale · q·k
        let (kt, ks) = k.tile(j0, j1, g, n_kv, d, &mut kbuf);
        for j in j0..j1 {
            let kj = &kt[(j - j0) * ks..][..d];
            for h in 0..group {
                s[h * TILE + j - j0] = scale * dot(&qg[h * d..][..d], kj);
            }
        }
        for h in 0..group {
            let sh = &mut s[h * TILE..][..nt];
            let m_new = sh.iter().fold(m[h], |a, &b| a.max(b));
            let mut tile_sum = F::ZERO;
            for x in sh.iter_mut() {
                *x = (*x - m_new).exp();
                tile_sum += *x;
            }
            if m[h] != m_new {
                // exp(−∞) = 0 clears the (still zero) accumulator on the first tile.
                let corr = (m[h] - m_new).exp();
                sum[h] *= corr;
                scale_in_place(corr, &mut o[h * d..][..d]);
                m[h] = m_new;
            }
            sum[h] += tile_sum;
        }
        let (vt, vs) = v.tile(j0, j1, g, n_kv, d, &mut vbuf);
        for j in j0..j1 {
            let vj = &vt[(j - j0) * vs..][..d];
            for h in 0..group {
                axpy(s[h * TILE + j - j0], vj, &mut o[h * d..][..d]);
            }
        }
        j0 = j1;
    }
    for h in 0..group {
        scale_in_place(F::ONE / sum[h], &mut o[h * d..][..d]);
        l[h] = m[h] + sum[h].ln();
    }
}
}

/// Backward of [`attention_forward`]; `dq`, `dk`, `dv` ACCUMULATE. `out` and `lse` are what the
/// forward produced; shapes as there (`dk, dv` like `k, v`).
///
/// The forward computed, per query row and head, `s_j = scale·q·k_j`, `p_j = exp(s_j − lse)`
/// and `out = Σ_j p_j·v_j`. So `dv_j += p_j·dout` and `dp_j = dout·v_j`; through the softmax
/// `ds_j = p_j·(dp_j − Σ_i p_i·dp_i)` where `Σ_i p_i·dp_i = dout·out` (call it `δ`); and through
/// the scores `dq += scale·Σ_j ds_j·k_j`, `dk_j += scale·ds_j·q`.
///
/// `dq` is computed per (query row, KV head) and `dk, dv` per (key row, KV head), each pass
/// recomputing `p` from `lse`: two race-free parallel passes instead of atomics or per-thread
/// copies of `dk, dv`, and the result does not depend on the thread count.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<F: Float>(
    dout: &[F],
    q: &[F],
    k: &[F],
    v: &[F],
    out: &[F],
    lse: &[F],
    q_pos: &[usize],
    n_q_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    window: Option<usize>,
    scale: F,
    dq: &mut [F],
    dk: &mut [F],
    dv: &mut [F],
) {
    let sh = check_shapes(
        q,
        k.len(),
        v.len(),
        q_pos,
        n_q_heads,
        n_kv_heads,
        head_dim,
        window,
    );
    assert_eq!(out.len(), q.len(), "out is not (T, n_q_heads, head_dim)");
    assert_eq!(dout.len(), q.len(), "dout is not (T, n_q_heads, head_dim)");
    assert_eq!(dq.len(), q.len(), "dq is not (T, n_q_heads, head_dim)");
    assert_eq!(dk.len(), k.len(), "dk is not (S, n_kv_heads, head_dim)");
    assert_eq!(dv.len(), v.len(), "dv is not (S, n_kv_heads, head_dim)");
    assert_eq!(lse.len(), sh.t * sh.n_q, "lse is not (T, n_q_heads)");
    let (d, group, n_kv, n_q) = (sh.d, sh.group, sh.n_kv, sh.n_q);
    let par = flops(&sh, q_pos, window) >= PAR_MIN_FLOPS;

    // δ = dout·out per (query row, head).
    let delta: Vec<F> = dout
        .chunks(d)
        .zip(out.chunks(d))
        .map(|(a, b)| dot(a, b))
        .collect();

    // Pass 1: dq, one item per (query row t, KV head g) owning `group × D` of dq.
    let dq_item = |(i, dqg): (usize, &mut [F])| {
        let (t, g) = (i / n_kv, i % n_kv);
        let (lo, hi) = key_range(q_pos[t], window);
        let rows = t * n_q + g * group;
        dq_rows(
            &q[rows * d..][..group * d],
            &dout[rows * d..][..group * d],
            &lse[rows..][..group],
            &delta[rows..][..group],
            k,
            v,
            g,
            n_kv,
            d,
            lo,
            hi,
            scale,
            dqg,
        );
    };
    if par {
        dq.par_chunks_mut(group * d).enumerate().for_each(dq_item);
    } else {
        dq.chunks_mut(group * d).enumerate().for_each(dq_item);
    }

    // Pass 2: dk and dv, one item per (key row j, KV head g) owning `D` of each.
    let dkv_item = |(i, (dkj, dvj)): (usize, (&mut [F], &mut [F]))| {
        let (j, g) = (i / n_kv, i % n_kv);
        dkv_row(
            &k[i * d..][..d],
            &v[i * d..][..d],
            j,
            g,
            q,
            dout,
            lse,
            &delta,
            q_pos,
            window,
            n_q,
            group,
            d,
            scale,
            dkj,
            dvj,
        );
    };
    if par {
        dk.par_chunks_mut(d)
            .zip(dv.par_chunks_mut(d))
            .enumerate()
            .for_each(dkv_item);
    } else {
        dk.chunks_mut(d)
            .zip(dv.chunks_mut(d))
            .enumerate()
            .for_each(dkv_item);
    }
    debug_assert_eq!(dk.len(), sh.s * n_kv * d);
}

multiversion! {
/// Pass 1 of the backward for one (query row, KV head): `qg`, `dog`, `dqg` are the group's
/// `group × D` rows, `lse_g`, `delta_g` its `group` cached statistics.
fn dq_rows<F: Float>(
    qg: &[F],
    dog: &[F],
    lse_g: &[F],
    delta_g: &[F],
    k: &[F],
    v: &[F],
    g: usize,
    n_kv: usize,
    d: usize,
    lo: usize,
    hi: usize,
    scale: F,
    dqg: &mut [F],
) {
    for (h, dqh) in dqg.chunks_exact_mut(d).enumerate() {
        let (qh, doh) = (&qg[h * d..][..d], &dog[h * d..][..d]);
        for j in lo..hi {
            let kv = (j * n_kv + g) * d;
            let (kj, vj) = (&k[kv..][..d], &v[kv..][..d]);
            // p = softmax recomputed from the cached lse; ds = p·(dout·v − δ)
            let p = (scale * dot(qh, kj) - lse_g[h]).exp();
            let ds = p * (dot(doh, vj) - delta_g[h]);
            axpy(scale * ds, kj, dqh);
        }
    }
}
}

multiversion! {
/// Pass 2 of the backward for key row `j` of KV head `g`: gathers `dk_j` and `dv_j` from every
/// query that attends it.
fn dkv_row<F: Float>(
    kj: &[F],
    vj: &[F],
    j: usize,
    g: usize,
    q: &[F],
    dout: &[F],
    lse: &[F],
    delta: &[F],
    q_pos: &[usize],
    window: Option<usize>,
    n_q: usize,
    group: usize,
    d: usize,
    scale: F,
    dkj: &mut [F],
    dvj: &mut [F],
) {
    for (t, &pos) in q_pos.iter().enumerate() {
        let (lo, hi) = key_range(pos, window);
        if j < lo || j >= hi {
            continue;
        }
        for h in 0..group {
            let row = t * n_q + g * group + h;
            let (qh, doh) = (&q[row * d..][..d], &dout[row * d..][..d]);
            let p = (scale * dot(qh, kj) - lse[row]).exp();
            axpy(p, doh, dvj);
            let ds = p * (dot(doh, vj) - delta[row]);
            axpy(scale * ds, qh, dkj);
        }
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;

    /// Every one of the 65,536 f16 bit patterns, at lengths with and without a tail, widens
    /// to `f16::to_f32` (the `half` crate's conversion) bit for bit; NaN stays NaN.
    #[test]
    fn widen_f16_equals_half_for_every_bit_pattern() {
        let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        for len in [all.len(), all.len() - 7, 15, 1] {
            let src = &all[all.len() - len..];
            let mut dst = vec![0f32; len];
            widen_f16(src, &mut dst);
            for (h, w) in src.iter().zip(&dst) {
                let want = h.to_f32();
                if want.is_nan() {
                    assert!(w.is_nan(), "{:#06x} widened to {w}", h.to_bits());
                } else {
                    assert_eq!(w.to_bits(), want.to_bits(), "{:#06x}", h.to_bits());
                }
            }
        }
    }

    /// Materialises the full score matrix with explicit masking: the obvious implementation.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reference(
        q: &[f64],
        k: &[f64],
        v: &[f64],
        q_pos: &[usize],
        n_q: usize,
        n_kv: usize,
        d: usize,
        window: Option<usize>,
        scale: f64,
    ) -> (Vec<f64>, Vec<f64>) {
        let s_len = k.len() / (n_kv * d);
        let mut out = vec![0.0; q.len()];
        let mut lse = vec![0.0; q_pos.len() * n_q];
        for (t, &p) in q_pos.iter().enumerate() {
            for h in 0..n_q {
                let g = h / (n_q / n_kv);
                let qh = &q[(t * n_q + h) * d..][..d];
                let scores: Vec<f64> = (0..s_len)
                    .map(|j| {
                        let allowed = j <= p && window.is_none_or(|w| p - j < w);
                        if allowed {
                            scale
                                * (0..d)
                                    .map(|i| qh[i] * k[(j * n_kv + g) * d + i])
                                    .sum::<f64>()
                        } else {
                            f64::NEG_INFINITY
                        }
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|s| (s - mx).exp()).sum();
                lse[t * n_q + h] = mx + z.ln();
                for j in 0..s_len {
                    let pj = (scores[j] - mx).exp() / z;
                    for i in 0..d {
                        out[(t * n_q + h) * d + i] += pj * v[(j * n_kv + g) * d + i];
                    }
                }
            }
        }
        (out, lse)
    }

    pub(super) struct Case {
        pub q_pos: Vec<usize>,
        pub s: usize,
        pub n_q: usize,
        pub n_kv: usize,
        pub d: usize,
        pub window: Option<usize>,
    }

    pub(super) fn cases() -> Vec<Case> {
        vec![
            // prefill from 0, MHA
            Case {
                q_pos: (0..5).collect(),
                s: 5,
                n_q: 2,
                n_kv: 2,
                d: 4,
                window: None,
            },
            // GQA with a window, positions offset from 0 (a chunk after a cached prefix)
            Case {
                q_pos: (3..9).collect(),
                s: 9,
                n_q: 4,
                n_kv: 2,
                d: 6,
                window: Some(3),
            },
            // Gemma-like MQA, window smaller than the tile and keys spanning several tiles
            Case {
                q_pos: vec![70, 130, 131, 150],
                s: 151,
                n_q: 4,
                n_kv: 1,
                d: 8,
                window: Some(100),
            },
            // single decode step, no window, several tiles, unsorted positions are fine too
            Case {
                q_pos: vec![200],
                s: 201,
                n_q: 2,
                n_kv: 1,
                d: 5,
                window: None,
            },
            Case {
                q_pos: vec![4, 1, 3],
                s: 6,
                n_q: 3,
                n_kv: 1,
                d: 3,
                window: Some(2),
            },
            // several query blocks and key blocks on the tiled path, offset start
            Case {
                q_pos: (10..160).collect(),
                s: 160,
                n_q: 2,
                n_kv: 1,
                d: 4,
                window: Some(70),
            },
            Case {
                q_pos: (0..140).collect(),
                s: 140,
                n_q: 2,
                n_kv: 2,
                d: 3,
                window: None,
            },
        ]
    }

    #[test]
    fn keys_in_tile_agrees_with_a_key_by_key_mask() {
        // Every position against tiles before, around and after its allowed keys.
        for window in [None, Some(1), Some(3), Some(10)] {
            for pos in 0..12 {
                for j0 in 0..14 {
                    for nk in 0..6 {
                        let allowed: Vec<usize> = (0..nk)
                            .filter(|&i| {
                                let j = j0 + i;
                                j <= pos && window.is_none_or(|w| pos - j < w)
                            })
                            .collect();
                        let (a, b) = keys_in_tile(pos, window, j0, nk);
                        assert!(a <= b && b <= nk);
                        assert_eq!((a..b).collect::<Vec<_>>(), allowed, "{pos} {window:?} {j0}");
                    }
                }
            }
        }
    }

    #[test]
    fn backward_row_helpers_match_their_formulas() {
        // Scores around the lse, including one far below (probability underflows to 0).
        let x: Vec<f32> = (0..37).map(|i| i as f32 * 0.37 - 5.0).collect();
        let (scale, lse) = (0.8f32, 2.5f32);
        let mut p = x.clone();
        probs_from_lse(&mut p, scale, lse);
        for (&pi, &xi) in p.iter().zip(&x) {
            let want = ((scale * xi - lse) as f64).exp();
            assert!((pi as f64 - want).abs() <= 4e-7 * want, "{pi} vs {want}");
        }
        let mut far = [-200.0f32];
        probs_from_lse(&mut far, 1.0, 0.0);
        assert_eq!(far[0], 0.0);
        let dp: Vec<f32> = (0..37).map(|i| (i as f32 * 0.71).sin()).collect();
        let mut ds = dp.clone();
        score_grads(&mut ds, &p, scale, 0.3);
        for ((&d, &pi), &dpi) in ds.iter().zip(&p).zip(&dp) {
            assert_eq!(d, scale * pi * (dpi - 0.3));
        }
    }

    #[test]
    fn softmax_row_matches_its_formula() {
        // Rows of one, 16 and off-lane lengths; a score far below the rest underflows to 0.
        for n in [1usize, 16, 37, 512] {
            let mut x: Vec<f32> = (0..n).map(|i| ((i * 7) % 23) as f32 * 0.9 - 8.0).collect();
            if n > 1 {
                x[n / 2] = -300.0;
            }
            let scale = 0.7f32;
            let mut p = x.clone();
            let lse = softmax_row(&mut p, scale);
            let want_lse = x
                .iter()
                .map(|&v| (scale as f64 * v as f64).exp())
                .sum::<f64>()
                .ln();
            assert!((lse as f64 - want_lse).abs() < 1e-6 * (1.0 + want_lse.abs()));
            for (&pi, &xi) in p.iter().zip(&x) {
                let want = (scale as f64 * xi as f64 - want_lse).exp();
                // exp_approx (4e-7), the sum and the division.
                assert!(
                    (pi as f64 - want).abs() <= 2e-6 * want + 1e-30,
                    "{pi} vs {want}"
                );
            }
            // What the backward recomputes from the lse: the same probabilities.
            let mut again = x.clone();
            probs_from_lse(&mut again, scale, lse);
            for (&a, &b) in again.iter().zip(&p) {
                assert!((a - b).abs() <= 2e-6 * b, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn forward_matches_reference() {
        for (ci, c) in cases().iter().enumerate() {
            let t = c.q_pos.len();
            let q = randn(t * c.n_q * c.d, 1 + ci as u64);
            let k = randn(c.s * c.n_kv * c.d, 11 + ci as u64);
            let v = randn(c.s * c.n_kv * c.d, 21 + ci as u64);
            let scale = 1.0 / (c.d as f32).sqrt();
            let mut out = vec![0.0f32; q.len()];
            let mut lse = vec![0.0f32; t * c.n_q];
            attention_forward(
                &q,
                &k,
                &v,
                &c.q_pos,
                c.n_q,
                c.n_kv,
                c.d,
                c.window,
                scale,
                &mut out,
                Some(&mut lse),
            );
            let (ro, rl) = reference(
                &to64(&q),
                &to64(&k),
                &to64(&v),
                &c.q_pos,
                c.n_q,
                c.n_kv,
                c.d,
                c.window,
                scale as f64,
            );
            assert_close(&out, &ro, 1e-5, &format!("out case {ci}"));
            assert_close(&lse, &rl, 1e-5, &format!("lse case {ci}"));
        }
    }

    /// The f16 KV path: bit for bit the f32 forward on the widened rows (one code path, only
    /// the storage differs), and within f16's rounding (2⁻¹¹ relative per element) of the f64
    /// reference on the unrounded f32 keys and values, on every case and on Gemma's shapes.
    #[test]
    fn f16_kv_matches_f32_on_widened_rows_and_reference_within_rounding() {
        let mut all = cases();
        all.push(Case {
            q_pos: vec![0, 1, 511, 512, 513, 599],
            s: 600,
            n_q: 4,
            n_kv: 1,
            d: 256,
            window: Some(512),
        });
        all.push(Case {
            q_pos: (560..600).collect(),
            s: 600,
            n_q: 4,
            n_kv: 1,
            d: 256,
            window: None,
        });
        for (ci, c) in all.iter().enumerate() {
            let t = c.q_pos.len();
            let q = randn(t * c.n_q * c.d, 31 + ci as u64);
            let k = randn(c.s * c.n_kv * c.d, 41 + ci as u64);
            let v = randn(c.s * c.n_kv * c.d, 51 + ci as u64);
            let kh: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
            let vh: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            let scale = 1.0 / (c.d as f32).sqrt();
            let run = |f16kv: bool| {
                let mut out = vec![0.0f32; q.len()];
                let mut lse = vec![0.0f32; t * c.n_q];
                let (kw, vw): (Vec<f32>, Vec<f32>) = (
                    kh.iter().map(|x| x.to_f32()).collect(),
                    vh.iter().map(|x| x.to_f32()).collect(),
                );
                let args = (&c.q_pos, c.n_q, c.n_kv, c.d, c.window, scale);
                if f16kv {
                    attention_forward_f16kv(
                        &q,
                        &kh,
                        &vh,
                        args.0,
                        args.1,
                        args.2,
                        args.3,
                        args.4,
                        args.5,
                        &mut out,
                        Some(&mut lse),
                    );
                } else {
                    attention_forward(
                        &q,
                        &kw,
                        &vw,
                        args.0,
                        args.1,
                        args.2,
                        args.3,
                        args.4,
                        args.5,
                        &mut out,
                        Some(&mut lse),
                    );
                }
                (out, lse)
            };
            let (oh, lh) = run(true);
            let (ow, lw) = run(false);
            assert!(
                oh.iter().zip(&ow).all(|(a, b)| a.to_bits() == b.to_bits()),
                "case {ci}: f16 rows differ from their widened f32 copy"
            );
            assert!(lh.iter().zip(&lw).all(|(a, b)| a.to_bits() == b.to_bits()));
            let (ro, rl) = reference(
                &to64(&q),
                &to64(&k),
                &to64(&v),
                &c.q_pos,
                c.n_q,
                c.n_kv,
                c.d,
                c.window,
                scale as f64,
            );
            // Scores move by ≤ 2⁻¹¹·Σ|q·k| ≈ 2⁻¹¹·√d·scale-free units, outputs by about the
            // same relative amount: 5e-3 of the scale is a few times that, 1e-5 (the f32
            // tolerance) would fail.
            assert_close(&oh, &ro, 5e-3, &format!("f16 out case {ci}"));
            assert_close(&lh, &rl, 5e-3, &format!("f16 lse case {ci}"));
            let worst = oh
                .iter()
                .zip(&ro)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(worst > 0.0, "case {ci}: rounding to f16 changed nothing?");
        }
    }

    #[test]
    fn gemma_shapes_prefill_and_decode_match_reference() {
        // Gemma 3 270M: 4 query heads, 1 KV head, D = 256, scale 1/16, window 512; T = 600
        // exercises the parallel path and windowed and global layers.
        let (n_q, n_kv, d, s) = (4, 1, 256, 600);
        let q_pos: Vec<usize> = vec![0, 1, 511, 512, 513, 599];
        let q = randn(q_pos.len() * n_q * d, 1);
        let k = randn(s * n_kv * d, 2);
        let v = randn(s * n_kv * d, 3);
        for window in [None, Some(512)] {
            let mut out = vec![0.0f32; q.len()];
            attention_forward(
                &q,
                &k,
                &v,
                &q_pos,
                n_q,
                n_kv,
                d,
                window,
                1.0 / 16.0,
                &mut out,
                None,
            );
            let (ro, _) = reference(
                &to64(&q),
                &to64(&k),
                &to64(&v),
                &q_pos,
                n_q,
                n_kv,
                d,
                window,
                1.0 / 16.0,
            );
            assert_close(&out, &ro, 1e-5, "gemma out");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        for (ci, c) in cases().iter().enumerate() {
            let t = c.q_pos.len();
            let seed = 100 * ci as u64;
            let q = randn64(t * c.n_q * c.d, seed + 1);
            let k = randn64(c.s * c.n_kv * c.d, seed + 2);
            let v = randn64(c.s * c.n_kv * c.d, seed + 3);
            let gy = randn64(q.len(), seed + 4);
            let scale = 0.7;
            let run = |q: &[f64], k: &[f64], v: &[f64]| {
                let mut out = vec![0.0; q.len()];
                let mut lse = vec![0.0; t * c.n_q];
                attention_forward(
                    q,
                    k,
                    v,
                    &c.q_pos,
                    c.n_q,
                    c.n_kv,
                    c.d,
                    c.window,
                    scale,
                    &mut out,
                    Some(&mut lse),
                );
                (out, lse)
            };
            let (out, lse) = run(&q, &k, &v);
            let (dq0, dk0, dv0) = (
                randn64(q.len(), seed + 5),
                randn64(k.len(), seed + 6),
                randn64(v.len(), seed + 7),
            );
            let (mut dq, mut dk, mut dv) = (dq0.clone(), dk0.clone(), dv0.clone());
            attention_backward(
                &gy, &q, &k, &v, &out, &lse, &c.q_pos, c.n_q, c.n_kv, c.d, c.window, scale,
                &mut dq, &mut dk, &mut dv,
            );
            let sub =
                |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>();
            // Beyond ~160 coordinates per tensor FD adds time, not coverage.
            let lim = |x: &[f64]| x.len().min(160);
            let nq = lim(&q);
            let fq = fd_grad(&q[..nq], 1e-5, |xs| {
                let mut qq = q.clone();
                qq[..nq].copy_from_slice(xs);
                contract(&run(&qq, &k, &v).0, &gy)
            });
            assert_close(&sub(&dq[..nq], &dq0), &fq, 1e-8, &format!("dq case {ci}"));
            let nk = lim(&k);
            let off = k.len() - nk; // the last keys are the ones windows reach
            let fk = fd_grad(&k[off..], 1e-5, |xs| {
                let mut kk = k.clone();
                kk[off..].copy_from_slice(xs);
                contract(&run(&q, &kk, &v).0, &gy)
            });
            assert_close(
                &sub(&dk[off..], &dk0[off..]),
                &fk,
                1e-8,
                &format!("dk case {ci}"),
            );
            let fv = fd_grad(&v[off..], 1e-5, |xs| {
                let mut vv = v.clone();
                vv[off..].copy_from_slice(xs);
                contract(&run(&q, &k, &vv).0, &gy)
            });
            assert_close(
                &sub(&dv[off..], &dv0[off..]),
                &fv,
                1e-8,
                &format!("dv case {ci}"),
            );
        }
    }

    #[test]
    fn backward_f32_matches_f64_at_gemma_shapes() {
        // The f32 kernel on the parallel path against the f64 one (itself FD-checked above).
        let (n_q, n_kv, d, s) = (4, 1, 256, 300);
        let q_pos: Vec<usize> = (0..s).collect();
        let q = randn(s * n_q * d, 1);
        let k = randn(s * n_kv * d, 2);
        let v = randn(s * n_kv * d, 3);
        let gy = randn(q.len(), 4);
        let w = Some(128);
        let mut out = vec![0.0f32; q.len()];
        let mut lse = vec![0.0f32; s * n_q];
        attention_forward(
            &q,
            &k,
            &v,
            &q_pos,
            n_q,
            n_kv,
            d,
            w,
            1.0 / 16.0,
            &mut out,
            Some(&mut lse),
        );
        let (mut dq, mut dk, mut dv) = (
            vec![0.0f32; q.len()],
            vec![0.0f32; k.len()],
            vec![0.0f32; v.len()],
        );
        attention_backward(
            &gy,
            &q,
            &k,
            &v,
            &out,
            &lse,
            &q_pos,
            n_q,
            n_kv,
            d,
            w,
            1.0 / 16.0,
            &mut dq,
            &mut dk,
            &mut dv,
        );
        let (q6, k6, v6, g6) = (to64(&q), to64(&k), to64(&v), to64(&gy));
        let mut out6 = vec![0.0; q.len()];
        let mut lse6 = vec![0.0; s * n_q];
        attention_forward(
            &q6,
            &k6,
            &v6,
            &q_pos,
            n_q,
            n_kv,
            d,
            w,
            1.0 / 16.0,
            &mut out6,
            Some(&mut lse6),
        );
        let (mut dq6, mut dk6, mut dv6) =
            (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
        attention_backward(
            &g6,
            &q6,
            &k6,
            &v6,
            &out6,
            &lse6,
            &q_pos,
            n_q,
            n_kv,
            d,
            w,
            1.0 / 16.0,
            &mut dq6,
            &mut dk6,
            &mut dv6,
        );
        assert_close(&dq, &dq6, 1e-4, "dq");
        assert_close(&dk, &dk6, 1e-4, "dk");
        assert_close(&dv, &dv6, 1e-4, "dv");
    }
}
